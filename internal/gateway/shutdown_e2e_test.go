package gateway_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/wire"
)

// slowUpstream answers GET /v1/batches/{id} with an in-progress batch, at
// once except for slowID, whose answer waits until release is closed (or
// the request is cancelled). arrived gets a value when a request for
// slowID comes in.
type slowUpstream struct {
	arrived chan struct{}
	release chan struct{}
}

const slowID = "batch_slow"

func (u *slowUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/batches/")
	if id == slowID {
		select {
		case u.arrived <- struct{}{}:
		default:
		}
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ownedBatch(id, "slow"))
}

// TestShutdownFinishesGetBatchInFlight: a GetBatch whose upstream call is
// in flight when shutdown starts still gets its batch, over both
// transports, while watch streams end at once with SHUTTING_DOWN.
func TestShutdownFinishesGetBatchInFlight(t *testing.T) {
	t.Parallel()
	type result struct {
		id  string
		err string
	}
	tests := []struct {
		name string
		get  func(t *testing.T, e *e2e) result
	}{
		{"grpc", func(t *testing.T, e *e2e) result {
			resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: slowID})
			if err != nil {
				return result{err: err.Error()}
			}
			return result{id: resp.GetBatch().GetId()}
		}},
		{"rest", func(t *testing.T, e *e2e) result {
			resp, err := e.HTTP.Get(e.BaseURL + "/v1/batches/" + slowID)
			if err != nil {
				return result{err: err.Error()}
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				return result{err: resp.Status + " " + string(body)}
			}
			var b wire.Batch
			if err := json.Unmarshal(body, &b); err != nil {
				return result{err: err.Error()}
			}
			return result{id: b.ID}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &slowUpstream{arrived: make(chan struct{}, 1), release: make(chan struct{})}
			e := startWith(t, gatewaytest.Options{Upstream: up}, slowPolls, quietHeartbeat,
				func(c *config.Config) { c.Server.ShutdownTimeout = time.Minute })
			w := e.watch(t, "batch_watched")
			w.next(t)

			got := make(chan result, 1)
			go func() { got <- tt.get(t, e) }()
			select {
			case <-up.arrived:
			case <-time.After(waitLimit):
				t.Fatal("the GetBatch never reached the upstream")
			}

			stopped := make(chan struct{})
			go func() { defer close(stopped); e.Stop() }()
			// The watch ending says shutdown has begun ending streams.
			st := w.end(t)
			if info := errorInfo(st); st.Code() != codes.Unavailable || info.GetReason() != apierr.ReasonShuttingDown {
				t.Fatalf("watch ended with %v, want UNAVAILABLE %s", st, apierr.ReasonShuttingDown)
			}
			close(up.release)

			if r := <-got; r.id != slowID {
				t.Errorf("GetBatch in flight at shutdown: %+v, want batch %s", r, slowID)
			}
			<-stopped
		})
	}
}

// TestShutdownDelayDrains: with -shutdown-delay, shutdown reports not
// ready at once (/readyz 503, gRPC health NOT_SERVING) while the gateway
// still serves calls, over new connections too, for the whole delay; then
// the listeners close.
func TestShutdownDelayDrains(t *testing.T) {
	t.Parallel()
	const delay = 1500 * time.Millisecond
	e := start(t, slowPolls, quietHeartbeat, func(c *config.Config) { c.Server.ShutdownDelay = delay })
	// A client of its own, without kept-alive connections: every request
	// dials the listener anew.
	fresh := &http.Client{Transport: gatewaytest.OpenAPITransport(t, &http.Transport{DisableKeepAlives: true})}
	readyz := func() int {
		resp, err := fresh.Get(e.BaseURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the shutdown delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d", code)
	}
	httpAddr := e.GW.HTTPAddr().String()

	began := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(stopped); e.Stop() }()
	for readyz() != http.StatusServiceUnavailable {
		if time.Since(began) > delay/2 {
			t.Fatal("/readyz still ready well into the shutdown delay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hresp, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hresp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health during the shutdown delay: %v, %v; want NOT_SERVING", hresp, err)
	}
	resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
	if err != nil || resp.GetBatch().GetId() != simulator.DemoCompleted {
		t.Errorf("gRPC GetBatch during the shutdown delay: %v, %v", resp, err)
	}
	rresp, err := fresh.Get(e.BaseURL + "/v1/batches/" + simulator.DemoCompleted)
	if err != nil {
		t.Fatalf("REST GetBatch during the shutdown delay: %v", err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		t.Errorf("REST GetBatch during the shutdown delay: %d", rresp.StatusCode)
	}
	select {
	case <-stopped:
		t.Fatalf("the gateway stopped %v after shutdown began, before the %v delay", time.Since(began), delay)
	default:
	}

	select {
	case <-stopped:
	case <-time.After(delay + waitLimit):
		t.Fatal("the gateway did not stop after the shutdown delay")
	}
	if took := time.Since(began); took < delay {
		t.Errorf("shutdown took %v, less than the %v delay", took, delay)
	}
	if c, err := net.DialTimeout("tcp", httpAddr, time.Second); err == nil {
		c.Close()
		t.Error("the HTTP listener still accepts after shutdown")
	}
}
