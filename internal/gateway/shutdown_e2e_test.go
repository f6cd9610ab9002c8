package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
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
