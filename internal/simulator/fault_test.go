package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

// batchCount returns how many batches GET /v1/batches lists.
func (e *env) batchCount() int {
	e.t.Helper()
	l := decodeMap(e.t, e.do("GET", "/v1/batches?limit=100", testBearer, "").body)
	data, _ := l["data"].([]any)
	return len(data)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCreateFaults: a create fault applies before the batch is made, or
// with AfterApply after it, so that a client sees a failure for a create
// that took effect.
func TestCreateFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fault   Fault
		timeout time.Duration // client timeout; 0 for none
		body    string        // "" is a valid create
		status  int           // 0: the request fails at the transport
		creates int64
	}{
		{name: "500 after the create", fault: Fault{Status: 500, AfterApply: true}, status: 500, creates: 1},
		{name: "503 with Retry-After after the create", fault: Fault{Status: 503, RetryAfter: "1", AfterApply: true}, status: 503, creates: 1},
		{name: "500 before the create", fault: Fault{Status: 500}, status: 500, creates: 0},
		{name: "reset after the create", fault: Fault{Reset: true, AfterApply: true}, status: 0, creates: 1},
		{name: "reset before the create", fault: Fault{Reset: true}, status: 0, creates: 0},
		{name: "hang after the create until the client gives up", fault: Fault{Delay: time.Hour, AfterApply: true},
			timeout: 50 * time.Millisecond, status: 0, creates: 1},
		{name: "truncated answer after the create", fault: Fault{Body: `{"id":"batch_`, AfterApply: true}, status: 200, creates: 1},
		{name: "delay after the create, then the answer", fault: Fault{Delay: time.Millisecond, AfterApply: true}, status: 200, creates: 1},
		{name: "invalid create: the fault answers, nothing made", fault: Fault{Status: 500, AfterApply: true},
			body: `{"input_file_id":"file_nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`, status: 500, creates: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			before := e.batchCount()
			e.sim.InjectCreateFaults(tc.fault)
			body := tc.body
			if body == "" {
				body = `{"input_file_id":"` + DemoInputFile + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			r, err := e.try(ctx, "POST", "/v1/batches", testBearer, body)
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("got %d %s, want a transport error", r.status, r.body)
			case tc.status == 0 && tc.timeout > 0 && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("err %v, want the deadline", err)
			case tc.status != 0 && err != nil:
				t.Fatal(err)
			case tc.status != 0 && r.status != tc.status:
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status >= 400 {
				checkEnvelope(t, r, tc.status, typeForStatus(tc.status), "")
				if tc.fault.RetryAfter != "" && r.header.Get("Retry-After") != tc.fault.RetryAfter {
					t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
				}
			}
			if tc.fault.Body != "" && string(r.body) != tc.fault.Body {
				t.Errorf("body %s, want the fault's", r.body)
			}
			if tc.status == 200 && tc.fault.Body == "" {
				var b wire.Batch
				if err := json.Unmarshal(r.body, &b); err != nil || b.Status != StatusValidating {
					t.Errorf("answer %s", r.body)
				}
			}
			if tc.creates > 0 {
				waitFor(t, "the create", func() bool { return e.sim.Creates() >= tc.creates })
			}
			if got := e.sim.Creates(); got != tc.creates {
				t.Errorf("Creates() = %d, want %d", got, tc.creates)
			}
			if got := e.batchCount(); got != before+int(tc.creates) {
				t.Errorf("%d batches listed, want %d", got, before+int(tc.creates))
			}
			// The fault was used once: the next create goes through.
			if r := e.do("POST", "/v1/batches", testBearer, body); (r.status == 200) != (tc.body == "") {
				t.Errorf("next create: %d %s", r.status, r.body)
			}
		})
	}

	t.Run("in order, authenticated requests only", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.sim.InjectCreateFaults(Fault{Status: 429, AfterApply: true}, Fault{Status: 502})
		body := `{"input_file_id":"` + DemoInputFile + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
		for i, want := range []struct {
			auth    string
			status  int
			creates int64
		}{{"", 401, 0}, {testBearer, 429, 1}, {"Bearer wrong", 401, 1}, {testBearer, 502, 1}, {testBearer, 200, 2}} {
			r := e.do("POST", "/v1/batches", want.auth, body)
			if r.status != want.status || e.sim.Creates() != want.creates {
				t.Fatalf("request %d: %d with %d creates, want %d and %d", i, r.status, e.sim.Creates(), want.status, want.creates)
			}
		}
		e.sim.Create(CreateRequest{InputFileID: DemoInputFile})
		if got := e.sim.Creates(); got != 2 {
			t.Errorf("Create counted: Creates() = %d", got)
		}
	})
}

// TestFileFaults: faults on uploads and file content.
func TestFileFaults(t *testing.T) {
	t.Parallel()
	body := func(t *testing.T) []byte {
		return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", numberedInput(2, 0)})
	}

	t.Run("upload stored, then 500", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		before := len(e.listFiles("", 100))
		e.sim.InjectUploadFaults(Fault{Status: 500, AfterApply: true}, Fault{Status: 503})
		checkEnvelope(t, e.send("POST", "/v1/files", multipartType, body(t)), 500, "api_error", "500")
		if n := len(e.listFiles("", 100)); n != before+1 {
			t.Errorf("%d files after the 500, want %d", n, before+1)
		}
		checkEnvelope(t, e.send("POST", "/v1/files", multipartType, body(t)), 503, "api_error", "503")
		if n := len(e.listFiles("", 100)); n != before+1 {
			t.Errorf("%d files after the 503, want %d", n, before+1)
		}
		e.upload("in.jsonl", "{}")
	})

	t.Run("content", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		full := string(e.content(DemoOutputFile))
		cut := full[:len(full)/2]
		e.sim.InjectContentFaults("", Fault{Status: 500})
		e.sim.InjectContentFaults(DemoOutputFile, Fault{Body: cut})
		if r := e.do("GET", "/v1/files/"+DemoOutputFile+"/content", testBearer, ""); r.status != 200 || string(r.body) != cut {
			t.Errorf("cut content: %d %q", r.status, r.body)
		}
		checkEnvelope(t, e.do("GET", "/v1/files/"+DemoInputFile+"/content", testBearer, ""), 500, "api_error", "500")
		if got := string(e.content(DemoOutputFile)); got != full {
			t.Errorf("content after the faults %q", got)
		}
		// The file object itself is not faulted.
		e.sim.InjectContentFaults("", Fault{Status: 500})
		if r := e.do("GET", "/v1/files/"+DemoOutputFile, testBearer, ""); r.status != 200 {
			t.Errorf("GET file: %d", r.status)
		}
	})

	t.Run("content reset after a delay", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.sim.InjectContentFaults(DemoOutputFile, Fault{Delay: time.Millisecond, Reset: true, AfterApply: true})
		if _, err := e.try(context.Background(), "GET", "/v1/files/"+DemoOutputFile+"/content", testBearer, ""); err == nil {
			t.Error("no transport error")
		}
		e.content(DemoOutputFile)
	})
}

// TestGetFaultAfterApply: on GET /v1/batches/{id}, AfterApply answers the
// batch as it was before the delay.
func TestGetFaultAfterApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.sim.InjectFaults(DemoCompleted, Fault{Delay: time.Millisecond, AfterApply: true}, Fault{Status: 503, AfterApply: true})
	if b, _ := e.get(DemoCompleted); b.ID != DemoCompleted {
		t.Errorf("%+v", b)
	}
	checkEnvelope(t, e.do("GET", "/v1/batches/"+DemoCompleted, testBearer, ""), http.StatusServiceUnavailable, "api_error", "503")
}
