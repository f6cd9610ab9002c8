package simulator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	const demo = "/v1/batches/" + DemoCompleted
	tests := []struct {
		name     string
		apiKey   string // Options.APIKey as newEnv takes it
		method   string
		path     string
		body     string
		auth     string
		wantCode string // "" means success
	}{
		{"no header", "", "GET", demo, "", "", "missing_api_key"},
		{"basic scheme", "", "GET", demo, "", "Basic c2stdGVzdDo=", "missing_api_key"},
		{"empty bearer", "", "GET", demo, "", "Bearer ", "missing_api_key"},
		{"bearer only", "", "GET", demo, "", "Bearer", "missing_api_key"},
		{"wrong key", "", "GET", demo, "", "Bearer sk-wrong", "invalid_api_key"},
		{"key prefix", "", "GET", demo, "", "Bearer sk-tes", "invalid_api_key"},
		{"right key", "", "GET", demo, "", testBearer, ""},
		{"lowercase scheme", "", "GET", demo, "", "bearer " + testKey, ""},
		{"list no key", "", "GET", "/v1/batches", "", "", "missing_api_key"},
		{"list wrong key", "", "GET", "/v1/batches", "", "Bearer x", "invalid_api_key"},
		{"create no key", "", "POST", "/v1/batches", `{}`, "", "missing_api_key"},
		{"cancel wrong key", "", "POST", demo + "/cancel", "", "Bearer x", "invalid_api_key"},
		{"unknown path no key", "", "GET", "/v1/nope", "", "", "missing_api_key"},
		{"files no key", "", "GET", "/v1/files", "", "", "missing_api_key"},
		{"files right key", "", "GET", "/v1/files", "", testBearer, ""},
		{"upload wrong key", "", "POST", "/v1/files", "x", "Bearer x", "invalid_api_key"},
		{"file wrong key", "", "GET", "/v1/files/file_x", "", "Bearer x", "invalid_api_key"},
		{"delete file no key", "", "DELETE", "/v1/files/file_x", "", "", "missing_api_key"},
		{"content wrong key", "", "GET", "/v1/files/file_x/content", "", "Bearer x", "invalid_api_key"},
		{"unknown file path no key", "", "GET", "/v1/files/file_x/nope", "", "", "missing_api_key"},
		{"wrong method no key", "", "DELETE", demo, "", "", "missing_api_key"},
		{"any key accepted", "-", "GET", demo, "", "Bearer anything", ""},
		{"any key still needs one", "-", "GET", demo, "", "", "missing_api_key"},
		{"any key empty bearer", "-", "GET", demo, "", "Bearer  ", "missing_api_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{APIKey: tc.apiKey})
			r := e.do(tc.method, tc.path, tc.auth, tc.body)
			if tc.wantCode == "" {
				if r.status != http.StatusOK {
					t.Fatalf("status %d, body %s", r.status, r.body)
				}
				return
			}
			typ := "invalid_request_error"
			if tc.wantCode == "invalid_api_key" {
				typ = "invalid_api_key"
			}
			if p := checkEnvelope(t, r, http.StatusUnauthorized, typ, tc.wantCode); p != nil {
				t.Errorf("param %v, want null", p)
			}
		})
	}
}

func TestDemoBatchIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	want := []string{DemoProgress, DemoValidating, DemoCompleted, DemoFailed, DemoExpired, DemoCancelled}
	got := e.sim.DemoBatchIDs()
	if !slices.Equal(got, want) {
		t.Fatalf("DemoBatchIDs() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if e.sim.DemoBatchIDs()[0] != DemoProgress {
		t.Error("DemoBatchIDs returns the simulator's own slice")
	}
	for _, id := range want {
		if !idRE.MatchString(id) {
			t.Errorf("demo id %q does not match %v", id, idRE)
		}
	}
}

// TestDemoShapes decodes every demo batch generically and checks which
// fields are present, null or absent.
func TestDemoShapes(t *testing.T) {
	t.Parallel()
	sampleKeys := []string{"id", "object", "endpoint", "status", "input_file_id", "output_file_id",
		"error_file_id", "completion_window", "request_counts", "created_at", "in_progress_at",
		"completed_at", "expires_at", "metadata", "errors"}
	allTimes := []string{"created_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at",
		"expired_at", "cancelling_at", "cancelled_at", "expires_at"}
	tests := []struct {
		id        string
		status    string
		counts    [3]float64
		times     []string // timestamps present; the others must be absent
		strs      map[string]string
		nulls     []string
		exactKeys []string // when set, the object has exactly these keys
		check     func(t *testing.T, m map[string]any)
	}{
		{
			id: DemoCompleted, status: "completed", counts: [3]float64{2, 2, 0},
			times:     []string{"created_at", "in_progress_at", "completed_at", "expires_at"},
			strs:      map[string]string{"output_file_id": "file_output_xyz", "input_file_id": "file_abc123"},
			nulls:     []string{"error_file_id", "errors"},
			exactKeys: sampleKeys,
			check: func(t *testing.T, m map[string]any) {
				if md, _ := m["metadata"].(map[string]any); md["job"] != "nightly" || len(md) != 1 {
					t.Errorf("metadata %v", m["metadata"])
				}
				if m["created_at"] != float64(t0.Add(-2*time.Hour).Unix()) {
					t.Errorf("created_at %v", m["created_at"])
				}
			},
		},
		{
			id: DemoFailed, status: "failed", counts: [3]float64{0, 0, 0},
			times: []string{"created_at", "failed_at", "expires_at"},
			nulls: []string{"output_file_id", "error_file_id", "metadata"},
			check: func(t *testing.T, m map[string]any) {
				errs, _ := m["errors"].(map[string]any)
				if errs["object"] != "list" {
					t.Fatalf("errors %v", m["errors"])
				}
				data, _ := errs["data"].([]any)
				if len(data) != 2 {
					t.Fatalf("errors.data %v", errs["data"])
				}
				first, _ := data[0].(map[string]any)
				if first["line"] != float64(3) || first["param"] != "body.model" || first["code"] == "" || first["message"] == "" {
					t.Errorf("errors.data[0] = %v", first)
				}
				second, _ := data[1].(map[string]any)
				if v, ok := second["param"]; !ok || v != nil {
					t.Errorf("errors.data[1].param = %v, want null", second)
				}
			},
		},
		{
			id: DemoExpired, status: "expired", counts: [3]float64{500, 320, 4},
			times: []string{"created_at", "in_progress_at", "expired_at", "expires_at"},
			strs:  map[string]string{"output_file_id": "file_out_demo_expired", "error_file_id": "file_err_demo_expired"},
			nulls: []string{"errors"},
			check: func(t *testing.T, m map[string]any) {
				if m["expired_at"] != m["expires_at"] {
					t.Errorf("expired_at %v, expires_at %v", m["expired_at"], m["expires_at"])
				}
				if m["expires_at"].(float64) > float64(t0.Unix()) {
					t.Errorf("expires_at %v is in the future", m["expires_at"])
				}
			},
		},
		{
			id: DemoCancelled, status: "cancelled", counts: [3]float64{200, 40, 1},
			times: []string{"created_at", "in_progress_at", "cancelling_at", "cancelled_at", "expires_at"},
			nulls: []string{"output_file_id", "error_file_id", "errors"},
			check: func(t *testing.T, m map[string]any) {
				if md, ok := m["metadata"].(map[string]any); !ok || len(md) != 0 {
					t.Errorf("metadata %v, want {}", m["metadata"])
				}
			},
		},
		{
			id: DemoProgress, status: "validating", counts: [3]float64{1000, 0, 0},
			times: []string{"created_at", "expires_at"},
			nulls: []string{"output_file_id", "error_file_id", "errors"},
			check: func(t *testing.T, m map[string]any) {
				if m["created_at"] != float64(t0.Unix()) || m["expires_at"] != float64(t0.Unix()+86400) {
					t.Errorf("created_at %v expires_at %v", m["created_at"], m["expires_at"])
				}
			},
		},
		{
			id: DemoValidating, status: "validating", counts: [3]float64{500, 0, 0},
			times: []string{"created_at", "expires_at"},
			nulls: []string{"output_file_id", "error_file_id", "errors"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			_, m := e.get(tc.id)
			if m["id"] != tc.id || m["object"] != "batch" || m["status"] != tc.status ||
				m["endpoint"] != "/v1/chat/completions" || m["completion_window"] != "24h" {
				t.Errorf("id/object/status/endpoint/window = %v/%v/%v/%v/%v",
					m["id"], m["object"], m["status"], m["endpoint"], m["completion_window"])
			}
			if s, _ := m["input_file_id"].(string); s == "" {
				t.Errorf("input_file_id %v", m["input_file_id"])
			}
			rc, _ := m["request_counts"].(map[string]any)
			if len(rc) != 3 || rc["total"] != tc.counts[0] || rc["completed"] != tc.counts[1] || rc["failed"] != tc.counts[2] {
				t.Errorf("request_counts %v, want %v", m["request_counts"], tc.counts)
			}
			for _, k := range allTimes {
				v, ok := m[k]
				if slices.Contains(tc.times, k) {
					f, isNum := v.(float64)
					if !isNum || f != float64(int64(f)) || f <= 0 {
						t.Errorf("%s = %#v, want a Unix time", k, v)
					}
				} else if ok {
					t.Errorf("%s = %v, want absent", k, v)
				}
			}
			for k, want := range tc.strs {
				if m[k] != want {
					t.Errorf("%s = %#v, want %q", k, m[k], want)
				}
			}
			for _, k := range tc.nulls {
				if v, ok := m[k]; !ok || v != nil {
					t.Errorf("%s = %#v (present %v), want null", k, v, ok)
				}
			}
			for _, k := range []string{"model", "usage"} {
				if _, ok := m[k]; ok {
					t.Errorf("%s present", k)
				}
			}
			if tc.exactKeys != nil {
				got := keys(m)
				slices.Sort(got)
				want := slices.Sorted(slices.Values(tc.exactKeys))
				if !slices.Equal(got, want) {
					t.Errorf("keys %v, want %v", got, want)
				}
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// TestLifecycle walks progressing batches through every status with the
// fake clock.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		phase  time.Duration
		slow   time.Duration // phase multiplier
		total  int64
		cycles bool                // the demo's moving batches restart after 4 phases
		start  func(e *env) string // returns the batch id, created at t0
	}{
		{"created over HTTP", 10 * time.Second, 1, 100, false, func(e *env) string {
			in := e.upload("in.jsonl", numberedInput(100, 25))
			r := e.do("POST", "/v1/batches", testBearer,
				`{"input_file_id":"`+in.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`)
			var b wire.Batch
			if err := json.Unmarshal(r.body, &b); err != nil || r.status != 200 {
				e.t.Fatalf("create: %d %s", r.status, r.body)
			}
			return b.ID
		}},
		{"created with Create", time.Minute, 1, CreatedBatchTotal, false, func(e *env) string {
			return e.sim.Create(CreateRequest{InputFileID: "file_in"}).ID
		}},
		{"demo progress", DefaultPhase, 1, 1000, true, func(*env) string { return DemoProgress }},
		{"demo validating is 10x slower", 3 * time.Second, 10, 500, true, func(*env) string { return DemoValidating }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{Phase: tc.phase})
			id := tc.start(e)
			p := tc.phase * tc.slow
			run := newRunCheck(t, t0, p, tc.total)
			steps := 41 // 0 .. 4 phases, in tenths of a phase
			if tc.cycles {
				steps = 40 // at 4 phases the next run begins (TestDemoCycles)
			}
			for step := range steps {
				now := t0.Add(time.Duration(step) * p / 10)
				e.clock.Set(now)
				b, _ := e.get(id)
				run.check(step, now, b)
			}
			run.done()
			if tc.cycles {
				// Completed until the cycle ends.
				e.clock.Set(t0.Add(4*p - time.Nanosecond))
				if b, _ := e.get(id); !reflectEqual(b, run.prev) {
					t.Errorf("completed batch changed before its cycle ended: %+v, was %+v", b, run.prev)
				}
				return
			}
			// Terminal: the clock moving on changes nothing.
			e.clock.Advance(1000 * time.Hour)
			if b, _ := e.get(id); !reflectEqual(b, run.prev) {
				t.Errorf("completed batch changed: %+v, was %+v", b, run.prev)
			}
		})
	}
}

// runCheck checks successive views of a progressing batch against one run
// of its lifecycle, begun at start with phases of p.
type runCheck struct {
	t              *testing.T
	start          time.Time
	p              time.Duration
	total          int64
	statuses       []string // the statuses seen, each once in a row
	prev           wire.Batch
	inProgressSeen map[int64]bool
}

func newRunCheck(t *testing.T, start time.Time, p time.Duration, total int64) *runCheck {
	return &runCheck{t: t, start: start, p: p, total: total, inProgressSeen: map[int64]bool{}}
}

// check checks b, the view at now, and the change from the previous view.
func (c *runCheck) check(step int, now time.Time, b wire.Batch) {
	t, t0, p := c.t, c.start, c.p
	t.Helper()
	if len(c.statuses) == 0 || c.statuses[len(c.statuses)-1] != b.Status {
		c.statuses = append(c.statuses, b.Status)
	}
	rc, prc := counts(&b), counts(&c.prev)
	if b.RequestCounts == nil || int64(rc.Total) != c.total {
		t.Fatalf("step %d: total %d, want %d", step, rc.Total, c.total)
	}
	if rc.Completed < prc.Completed || rc.Failed < prc.Failed {
		t.Fatalf("step %d: counts went down: %+v after %+v", step, rc, prc)
	}
	if rc.Completed+rc.Failed > rc.Total {
		t.Fatalf("step %d: counts %+v exceed total", step, rc)
	}
	if !eqPtr(b.CreatedAt, unix(t0)) || !eqPtr(b.ExpiresAt, unix(t0.Add(24*time.Hour))) {
		t.Fatalf("step %d: created_at %s expires_at %s, want %d and a day later", step, str(b.CreatedAt), str(b.ExpiresAt), t0.Unix())
	}
	// Timestamps appear with their phase, at their exact time.
	want := struct{ inProgress, finalizing, completed *wire.Int }{}
	if now.Sub(t0) >= p {
		want.inProgress = unix(t0.Add(p))
	}
	if now.Sub(t0) >= 2*p {
		want.finalizing = unix(t0.Add(2 * p))
	}
	if now.Sub(t0) >= 3*p {
		want.completed = unix(t0.Add(3 * p))
	}
	if !eqPtr(b.InProgressAt, want.inProgress) || !eqPtr(b.FinalizingAt, want.finalizing) || !eqPtr(b.CompletedAt, want.completed) {
		t.Fatalf("step %d (%s): in_progress_at %s finalizing_at %s completed_at %s, want %s %s %s", step, b.Status,
			str(b.InProgressAt), str(b.FinalizingAt), str(b.CompletedAt),
			str(want.inProgress), str(want.finalizing), str(want.completed))
	}
	if b.FailedAt != nil || b.ExpiredAt != nil || b.CancellingAt != nil || b.CancelledAt != nil || b.Errors != nil {
		t.Fatalf("step %d: unexpected failure fields in %+v", step, b)
	}
	switch b.Status {
	case StatusValidating:
		if rc.Completed != 0 || rc.Failed != 0 {
			t.Fatalf("step %d: validating with counts %+v", step, rc)
		}
	case StatusInProgress:
		c.inProgressSeen[int64(rc.Completed)] = true
	case StatusFinalizing, StatusCompleted:
		if rc.Completed+rc.Failed != rc.Total || rc.Failed == 0 || rc.Failed > rc.Total/10 {
			t.Fatalf("step %d: %s with counts %+v, want all done and a few failed", step, b.Status, rc)
		}
	}
	done := b.Status == StatusCompleted
	if (b.OutputFileID != nil) != done || (b.ErrorFileID != nil) != done {
		t.Fatalf("step %d: %s with output %s error %s", step, b.Status, str(b.OutputFileID), str(b.ErrorFileID))
	}
	c.prev = b
}

// done checks that the run went through every status, in order, with a
// smooth rise of the counts while in progress.
func (c *runCheck) done() {
	c.t.Helper()
	want := []string{"validating", "in_progress", "finalizing", "completed"}
	if !slices.Equal(c.statuses, want) {
		c.t.Errorf("run from %d: statuses %v, want %v", c.start.Unix(), c.statuses, want)
	}
	if len(c.inProgressSeen) < 5 {
		c.t.Errorf("run from %d: completed took only %d values while in progress, want a smooth rise", c.start.Unix(), len(c.inProgressSeen))
	}
}

// TestDemoCycles: the demo's moving batches restart their lifecycle every
// four phases (of their own clock), so that a watcher who waits at most one
// cycle sees a whole run.
func TestDemoCycles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id    string
		phase time.Duration
		slow  time.Duration
		total int64
	}{
		{DemoProgress, DefaultPhase, 1, 1000},
		{DemoValidating, 3 * time.Second, 10, 500},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			p := tc.phase * tc.slow
			cycle := 4 * p

			t.Run("restarts after one cycle", func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Options{Phase: tc.phase})
				e.clock.Set(t0.Add(cycle - time.Nanosecond))
				if b, _ := e.get(tc.id); b.Status != StatusCompleted || !eqPtr(b.CreatedAt, unix(t0)) {
					t.Fatalf("just before the cycle ends: %s created_at %s", b.Status, str(b.CreatedAt))
				}
				e.clock.Set(t0.Add(cycle + time.Nanosecond))
				b, m := e.get(tc.id)
				if b.Status != StatusValidating || !eqPtr(b.CreatedAt, unix(t0.Add(cycle))) ||
					!eqPtr(b.ExpiresAt, unix(t0.Add(cycle+24*time.Hour))) {
					t.Fatalf("just after: %s created_at %s expires_at %s, want validating created at %d",
						b.Status, str(b.CreatedAt), str(b.ExpiresAt), t0.Add(cycle).Unix())
				}
				if rc := counts(&b); int64(rc.Total) != tc.total || rc.Completed != 0 || rc.Failed != 0 {
					t.Errorf("request_counts %+v, want %d, 0, 0", rc, tc.total)
				}
				for _, k := range []string{"in_progress_at", "finalizing_at", "completed_at"} {
					if v, ok := m[k]; ok {
						t.Errorf("%s = %v, want absent", k, v)
					}
				}
				if v, ok := m["output_file_id"]; !ok || v != nil {
					t.Errorf("output_file_id %v, want null", v)
				}
				if v, ok := m["error_file_id"]; !ok || v != nil {
					t.Errorf("error_file_id %v, want null", v)
				}
			})

			t.Run("two cycles", func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Options{Phase: tc.phase})
				var statuses []string
				var run *runCheck
				for step := range 81 { // 0 .. 2 cycles, in tenths of a phase
					now := t0.Add(time.Duration(step) * p / 10)
					start := t0.Add(time.Duration(step/40) * cycle)
					if run == nil || !run.start.Equal(start) {
						if run != nil {
							run.done()
						}
						run = newRunCheck(t, start, p, tc.total)
					}
					e.clock.Set(now)
					b, _ := e.get(tc.id)
					run.check(step, now, b)
					if len(statuses) == 0 || statuses[len(statuses)-1] != b.Status {
						statuses = append(statuses, b.Status)
					}
				}
				want := []string{"validating", "in_progress", "finalizing", "completed",
					"validating", "in_progress", "finalizing", "completed", "validating"}
				if !slices.Equal(statuses, want) {
					t.Errorf("statuses %v, want %v", statuses, want)
				}
			})

			t.Run("a cancel holds for its run only", func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Options{Phase: tc.phase})
				cancelAt := t0.Add(cycle + p*3/2) // in progress, second run
				e.clock.Set(cancelAt)
				if r := e.do("POST", "/v1/batches/"+tc.id+"/cancel", testBearer, ""); r.status != 200 {
					t.Fatalf("cancel: %d %s", r.status, r.body)
				}
				e.clock.Set(t0.Add(2*cycle - time.Nanosecond))
				b, _ := e.get(tc.id)
				if b.Status != StatusCancelled || !eqPtr(b.CancellingAt, unix(cancelAt)) ||
					!eqPtr(b.CancelledAt, unix(cancelAt.Add(tc.phase))) || !eqPtr(b.CreatedAt, unix(t0.Add(cycle))) {
					t.Fatalf("end of the cancelled run: %s cancelling_at %s cancelled_at %s created_at %s",
						b.Status, str(b.CancellingAt), str(b.CancelledAt), str(b.CreatedAt))
				}
				if b.CompletedAt != nil || b.FinalizingAt != nil {
					t.Errorf("progress went on after cancel: %+v", b)
				}
				e.clock.Set(t0.Add(2 * cycle))
				b, m := e.get(tc.id)
				if b.Status != StatusValidating || !eqPtr(b.CreatedAt, unix(t0.Add(2*cycle))) {
					t.Fatalf("next run: %s created_at %s", b.Status, str(b.CreatedAt))
				}
				for _, k := range []string{"cancelling_at", "cancelled_at", "in_progress_at"} {
					if v, ok := m[k]; ok {
						t.Errorf("next run: %s = %v, want absent", k, v)
					}
				}
				// It can be cancelled again.
				r := e.do("POST", "/v1/batches/"+tc.id+"/cancel", testBearer, "")
				if m := decodeMap(t, r.body); m["status"] != "cancelling" || m["cancelling_at"] != float64(t0.Add(2*cycle).Unix()) {
					t.Errorf("second cancel: %s", r.body)
				}
			})
		})
	}

	t.Run("created and static batches do not cycle", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		id := e.sim.Create(CreateRequest{InputFileID: "file_in"}).ID
		before := map[string][]byte{}
		e.clock.Set(t0.Add(3 * DefaultPhase))
		for _, id := range []string{id, DemoCompleted, DemoFailed, DemoExpired, DemoCancelled} {
			before[id] = e.do("GET", "/v1/batches/"+id, testBearer, "").body
		}
		for _, d := range []time.Duration{4, 5, 40, 41, 400, 401} {
			e.clock.Set(t0.Add(d * DefaultPhase))
			for id, want := range before {
				if got := e.do("GET", "/v1/batches/"+id, testBearer, "").body; !bytes.Equal(got, want) {
					t.Errorf("%s at %d phases:\n%s\nwant\n%s", id, d, got, want)
				}
			}
		}
	})

	t.Run("the list follows the moving created_at", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.clock.Set(t0.Add(time.Second))
		created := e.sim.Create(CreateRequest{InputFileID: "file_in"}).ID
		for _, tc := range []struct {
			at   time.Duration
			want []string
		}{
			{2 * time.Second, []string{created, DemoValidating, DemoProgress}},
			{4*DefaultPhase + time.Second, []string{DemoProgress, created, DemoValidating}},
			// Both restarted at 40 phases: the later inserted first.
			{40*DefaultPhase + time.Second, []string{DemoValidating, DemoProgress, created}},
		} {
			e.clock.Set(t0.Add(tc.at))
			var got []string
			var times []float64
			after := ""
			for {
				path := "/v1/batches?limit=2"
				if after != "" {
					path += "&after=" + after
				}
				l := decodeMap(t, e.do("GET", path, testBearer, "").body)
				for _, b := range l["data"].([]any) {
					m := b.(map[string]any)
					got = append(got, m["id"].(string))
					times = append(times, m["created_at"].(float64))
				}
				if l["has_more"] != true {
					break
				}
				after = l["last_id"].(string)
			}
			if !slices.Equal(got[:3], tc.want) || len(got) != 7 {
				t.Errorf("at %s: listed %v, want %v first and 7 in all", tc.at, got, tc.want)
			}
			if !slices.IsSortedFunc(times, func(a, b float64) int { return cmp.Compare(b, a) }) {
				t.Errorf("at %s: created_at %v, want newest first", tc.at, times)
			}
		}
	})
}

func reflectEqual(a, b wire.Batch) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestLifecycleExpiry: a batch that cannot finish within its 24h window
// expires with partial results.
func TestLifecycleExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Phase: 20 * time.Hour})
	id := e.sim.Create(CreateRequest{InputFileID: "file_in"}).ID
	e.clock.Advance(23 * time.Hour)
	if b, _ := e.get(id); b.Status != StatusInProgress {
		t.Fatalf("at 23h: %s", b.Status)
	}
	e.clock.Advance(time.Hour)
	b, m := e.get(id)
	if b.Status != StatusExpired || !eqPtr(b.ExpiredAt, unix(t0.Add(24*time.Hour))) || b.CompletedAt != nil {
		t.Fatalf("at 24h: %s expired_at %s completed_at %s", b.Status, str(b.ExpiredAt), str(b.CompletedAt))
	}
	if rc := counts(&b); rc.Completed == 0 || rc.Completed+rc.Failed >= rc.Total {
		t.Errorf("counts %+v, want partial", rc)
	}
	if m["output_file_id"] == nil {
		t.Error("expired batch without partial output_file_id")
	}
	e.clock.Advance(100 * time.Hour)
	if later, _ := e.get(id); !reflectEqual(later, b) {
		t.Errorf("expired batch changed: %+v", later)
	}
}

func TestList(t *testing.T) {
	t.Parallel()

	t.Run("pagination", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		var created []string
		for range 5 {
			e.clock.Advance(time.Second)
			created = append(created, e.sim.Create(CreateRequest{InputFileID: "file_in"}).ID)
		}
		slices.Reverse(created)
		// Newest first: created batches, then the demo batches by created_at
		// (the two progressing ones share New's time: later insert first).
		want := append(created, DemoValidating, DemoProgress, DemoCompleted, DemoFailed, DemoCancelled, DemoExpired)

		var got []string
		after := ""
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatal("pagination does not end")
			}
			path := "/v1/batches?limit=3"
			if after != "" {
				path += "&after=" + after
			}
			r := e.do("GET", path, testBearer, "")
			if r.status != 200 {
				t.Fatalf("%s: %d %s", path, r.status, r.body)
			}
			var l struct {
				Object  string           `json:"object"`
				Data    []map[string]any `json:"data"`
				FirstID *string          `json:"first_id"`
				LastID  *string          `json:"last_id"`
				HasMore bool             `json:"has_more"`
			}
			if err := json.Unmarshal(r.body, &l); err != nil {
				t.Fatal(err)
			}
			if l.Object != "list" || len(l.Data) == 0 || len(l.Data) > 3 {
				t.Fatalf("page %d: object %q, %d items", page, l.Object, len(l.Data))
			}
			if l.FirstID == nil || *l.FirstID != l.Data[0]["id"] || l.LastID == nil || *l.LastID != l.Data[len(l.Data)-1]["id"] {
				t.Errorf("page %d: first_id %s last_id %s", page, str(l.FirstID), str(l.LastID))
			}
			for _, b := range l.Data {
				if b["object"] != "batch" {
					t.Errorf("item %v", b)
				}
				got = append(got, b["id"].(string))
			}
			if !l.HasMore {
				break
			}
			after = *l.LastID
		}
		if !slices.Equal(got, want) {
			t.Errorf("listed\n %v\nwant\n %v", got, want)
		}

		// After the oldest batch: an empty page.
		r := e.do("GET", "/v1/batches?after="+DemoExpired, testBearer, "")
		m := decodeMap(t, r.body)
		if data, ok := m["data"].([]any); !ok || len(data) != 0 || m["first_id"] != nil || m["last_id"] != nil || m["has_more"] != false {
			t.Errorf("empty page: %s", r.body)
		}
	})

	t.Run("default limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		for range 25 {
			e.sim.Create(CreateRequest{InputFileID: "file_in"})
		}
		for _, tc := range []struct {
			query string
			n     int
			more  bool
		}{{"", 20, true}, {"?limit=100", 31, false}, {"?limit=1", 1, true}, {"?limit=31", 31, false}, {"?limit=30", 30, true}} {
			var l struct {
				Data    []json.RawMessage `json:"data"`
				HasMore bool              `json:"has_more"`
			}
			r := e.do("GET", "/v1/batches"+tc.query, testBearer, "")
			if err := json.Unmarshal(r.body, &l); err != nil || r.status != 200 {
				t.Fatalf("%q: %d %s", tc.query, r.status, r.body)
			}
			if len(l.Data) != tc.n || l.HasMore != tc.more {
				t.Errorf("%q: %d items has_more %v, want %d %v", tc.query, len(l.Data), l.HasMore, tc.n, tc.more)
			}
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		for _, tc := range []struct{ query, param string }{
			{"limit=0", "limit"}, {"limit=101", "limit"}, {"limit=-1", "limit"},
			{"limit=abc", "limit"}, {"limit=1.5", "limit"}, {"limit=%20", "limit"},
			{"after=batch_nope", "after"},
		} {
			r := e.do("GET", "/v1/batches?"+tc.query, testBearer, "")
			if p := checkEnvelope(t, r, 400, "invalid_request_error", ""); p != tc.param {
				t.Errorf("%s: param %v, want %q", tc.query, p, tc.param)
			}
		}
	})
}

func TestCreate(t *testing.T) {
	t.Parallel()
	valid := func(extra string) string {
		return `{"input_file_id":"file_abc123","endpoint":"/v1/chat/completions","completion_window":"24h"` + extra + `}`
	}
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	tests := []struct {
		name   string
		body   string
		status int
		param  any // expected envelope param (nil: null)
		code   string
		check  func(t *testing.T, m map[string]any)
	}{
		{name: "minimal", body: valid(""), status: 200, check: func(t *testing.T, m map[string]any) {
			if v, ok := m["metadata"]; !ok || v != nil {
				t.Errorf("metadata %v, want null", v)
			}
		}},
		{name: "metadata", body: valid(`,"metadata":{"job":"nightly","owner":"ops"}`), status: 200, check: func(t *testing.T, m map[string]any) {
			if md, _ := m["metadata"].(map[string]any); len(md) != 2 || md["job"] != "nightly" {
				t.Errorf("metadata %v", m["metadata"])
			}
		}},
		{name: "unknown fields ignored", body: valid(`,"callback_url":"https://example.invalid/hook","x":1`), status: 200},
		{name: "16 metadata pairs", body: valid(`,"metadata":{` + strings.Join(many[:16], ",") + `}`), status: 200},
		{name: "unknown input file", body: `{"input_file_id":"file_nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			status: 400, param: "input_file_id", code: "invalid_value"},
		{name: "input file of another purpose", body: `{"input_file_id":"OUTPUT_FILE","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			status: 400, param: "input_file_id", code: "invalid_value"},
		{name: "missing input_file_id", body: `{"endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			status: 400, param: "input_file_id", code: "missing_required_parameter"},
		{name: "bad input_file_id", body: `{"input_file_id":"../etc","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			status: 400, param: "input_file_id", code: "invalid_value"},
		{name: "missing endpoint", body: `{"input_file_id":"f","completion_window":"24h"}`,
			status: 400, param: "endpoint", code: "missing_required_parameter"},
		{name: "unsupported endpoint", body: `{"input_file_id":"f","endpoint":"/v1/embeddings","completion_window":"24h"}`,
			status: 400, param: "endpoint", code: "invalid_value"},
		{name: "missing window", body: `{"input_file_id":"f","endpoint":"/v1/chat/completions"}`,
			status: 400, param: "completion_window", code: "missing_required_parameter"},
		{name: "unsupported window", body: `{"input_file_id":"f","endpoint":"/v1/chat/completions","completion_window":"48h"}`,
			status: 400, param: "completion_window", code: "invalid_value"},
		{name: "17 metadata pairs", body: valid(`,"metadata":{` + strings.Join(many, ",") + `}`),
			status: 400, param: "metadata", code: "invalid_value"},
		{name: "long metadata key", body: valid(`,"metadata":{"` + strings.Repeat("k", 65) + `":"v"}`),
			status: 400, param: "metadata", code: "invalid_value"},
		{name: "long metadata value", body: valid(`,"metadata":{"k":"` + strings.Repeat("v", 513) + `"}`),
			status: 400, param: "metadata", code: "invalid_value"},
		{name: "output_expires_after", body: valid(`,"output_expires_after":{"anchor":"created_at","seconds":3600}`), status: 200},
		{name: "output_expires_after too short", body: valid(`,"output_expires_after":{"anchor":"created_at","seconds":3599}`),
			status: 400, param: "output_expires_after", code: "invalid_value"},
		{name: "output_expires_after too long", body: valid(`,"output_expires_after":{"anchor":"created_at","seconds":2592001}`),
			status: 400, param: "output_expires_after", code: "invalid_value"},
		{name: "output_expires_after bad anchor", body: valid(`,"output_expires_after":{"anchor":"completed_at","seconds":3600}`),
			status: 400, param: "output_expires_after", code: "invalid_value"},
		{name: "wrong type", body: `{"input_file_id":7}`, status: 400, param: "input_file_id", code: "invalid_type"},
		{name: "not JSON", body: `input_file_id=f`, status: 400, code: "invalid_json"},
		{name: "empty body", body: ``, status: 400, code: "invalid_json"},
		{name: "array", body: `[]`, status: 400, code: "invalid_json"},
		{name: "trailing data", body: valid("") + ` {}`, status: 400, code: "invalid_json"},
		{name: "over 1 MiB", body: valid(`,"metadata":{"k":"` + strings.Repeat("v", 1<<20) + `"}`), status: 413, code: "request_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			in := e.upload("in.jsonl", numberedInput(2, 0))
			out := e.sim.PutFile("out.jsonl", "batch_output", []byte(numberedInput(2, 0)))
			body := strings.NewReplacer("file_abc123", in.ID, "OUTPUT_FILE", out.ID).Replace(tc.body)
			r := e.do("POST", "/v1/batches", testBearer, body)
			if tc.status != 200 {
				param := checkEnvelope(t, r, tc.status, "invalid_request_error", tc.code)
				if param != tc.param {
					t.Errorf("param %#v, want %#v", param, tc.param)
				}
				l := decodeMap(t, e.do("GET", "/v1/batches?limit=100", testBearer, "").body)
				if data, _ := l["data"].([]any); len(data) != len(e.sim.DemoBatchIDs()) {
					t.Errorf("a rejected create stored a batch: %d listed", len(data))
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := decodeMap(t, r.body)
			id, _ := m["id"].(string)
			if !regexp.MustCompile(`^batch_[0-9a-f]{24}$`).MatchString(id) {
				t.Errorf("id %q", id)
			}
			if m["status"] != "validating" || m["object"] != "batch" || m["input_file_id"] != in.ID ||
				m["created_at"] != float64(t0.Unix()) || m["expires_at"] != float64(t0.Unix()+86400) {
				t.Errorf("created batch %s", r.body)
			}
			if rc, _ := m["request_counts"].(map[string]any); rc["total"] != float64(2) {
				t.Errorf("request_counts %v", m["request_counts"])
			}
			if tc.check != nil {
				tc.check(t, m)
			}
			// It is stored: GET returns the same and the list starts with it.
			if g := e.do("GET", "/v1/batches/"+id, testBearer, ""); !bytes.Equal(g.body, r.body) {
				t.Errorf("GET after create:\n%s\nwant\n%s", g.body, r.body)
			}
			l := decodeMap(t, e.do("GET", "/v1/batches?limit=1", testBearer, "").body)
			if l["first_id"] != id {
				t.Errorf("list first_id %v, want %s", l["first_id"], id)
			}
		})
	}
}

func TestCreateIDsAreUnique(t *testing.T) {
	t.Parallel()
	sim := New(Options{})
	seen := map[string]bool{}
	for range 200 {
		id := sim.Create(CreateRequest{InputFileID: "f"}).ID
		if seen[id] || !idRE.MatchString(id) {
			t.Fatalf("id %q repeated or malformed", id)
		}
		seen[id] = true
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second

	t.Run("in progress", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		id := e.sim.Create(CreateRequest{InputFileID: "f"}).ID
		e.clock.Advance(phase * 3 / 2)
		r := e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, "")
		var c wire.Batch
		if err := json.Unmarshal(r.body, &c); err != nil || r.status != 200 {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		cancelAt := t0.Add(phase * 3 / 2)
		if c.Status != StatusCancelling || !eqPtr(c.CancellingAt, unix(cancelAt)) || c.CancelledAt != nil {
			t.Fatalf("after cancel: %s cancelling_at %s cancelled_at %s", c.Status, str(c.CancellingAt), str(c.CancelledAt))
		}
		if counts(&c).Completed == 0 || c.InProgressAt == nil {
			t.Fatalf("counts %s in_progress_at %s: want partial progress", str(c.RequestCounts), str(c.InProgressAt))
		}
		// Cancelling again changes nothing.
		e.clock.Advance(phase / 2)
		if again := e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, ""); !bytes.Equal(again.body, r.body) {
			t.Errorf("second cancel:\n%s\nwant\n%s", again.body, r.body)
		}
		if b, _ := e.get(id); b.Status != StatusCancelling || !eqPtr(b.RequestCounts, c.RequestCounts) {
			t.Errorf("half a phase later: %s %s", b.Status, str(b.RequestCounts))
		}
		e.clock.Advance(phase / 2)
		b, _ := e.get(id)
		if b.Status != StatusCancelled || !eqPtr(b.CancelledAt, unix(cancelAt.Add(phase))) || !eqPtr(b.CancellingAt, c.CancellingAt) {
			t.Fatalf("a phase later: %s cancelled_at %s", b.Status, str(b.CancelledAt))
		}
		if !eqPtr(b.RequestCounts, c.RequestCounts) || b.FinalizingAt != nil || b.CompletedAt != nil {
			t.Errorf("progress went on after cancel: %+v", b)
		}
		if b.OutputFileID == nil {
			t.Error("cancelled batch with completed requests has no partial output_file_id")
		}
		e.clock.Advance(100 * phase)
		if later, _ := e.get(id); !reflectEqual(later, b) {
			t.Errorf("cancelled batch changed: %+v", later)
		}
	})

	t.Run("validating", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		if r := e.do("POST", "/v1/batches/"+DemoProgress+"/cancel", testBearer, ""); r.status != 200 {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		e.clock.Advance(phase)
		b, m := e.get(DemoProgress)
		if b.Status != StatusCancelled || counts(&b).Completed != 0 || b.InProgressAt != nil {
			t.Errorf("%+v", b)
		}
		if m["output_file_id"] != nil || m["error_file_id"] != nil {
			t.Errorf("files on a batch cancelled while validating: %v %v", m["output_file_id"], m["error_file_id"])
		}
	})

	t.Run("static non-terminal", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		e.sim.Put(wire.Batch{ID: "batch_paused", Object: "batch", Status: "paused", CreatedAt: ptr[wire.Int](1)})
		r := e.do("POST", "/v1/batches/batch_paused/cancel", testBearer, "")
		if m := decodeMap(t, r.body); m["status"] != "cancelling" {
			t.Errorf("cancel: %s", r.body)
		}
	})

	t.Run("terminal returned as is", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		for _, id := range []string{DemoCompleted, DemoFailed, DemoExpired, DemoCancelled} {
			before := e.do("GET", "/v1/batches/"+id, testBearer, "")
			r := e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, "")
			if r.status != 200 || !bytes.Equal(r.body, before.body) {
				t.Errorf("%s: cancel %d\n%s\nwant\n%s", id, r.status, r.body, before.body)
			}
			e.clock.Advance(10 * phase)
			if after := e.do("GET", "/v1/batches/"+id, testBearer, ""); !bytes.Equal(after.body, before.body) {
				t.Errorf("%s changed after cancel: %s", id, after.body)
			}
		}
	})

	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		r := e.do("POST", "/v1/batches/batch_nope/cancel", testBearer, "")
		checkEnvelope(t, r, 404, "not_found_error", "")
	})
}

// step is one request of a fault test and what it must get.
type step struct {
	id     string
	auth   string // "" means testBearer; "-" means none
	status int    // 0: the request must fail at the transport
	check  func(t *testing.T, r response)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	ok := step{id: DemoCompleted, status: 200}
	tests := []struct {
		name   string
		inject func(sim *Simulator)
		steps  []step
	}{
		{
			name: "429 with Retry-After, consumed once",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 429, RetryAfter: "2"})
			},
			steps: []step{{id: DemoCompleted, status: 429, check: func(t *testing.T, r response) {
				checkEnvelope(t, r, 429, "rate_limit_error", "429")
				if got := r.header.Get("Retry-After"); got != "2" {
					t.Errorf("Retry-After %q", got)
				}
			}}, ok, ok},
		},
		{
			name: "503 with type and HTTP-date Retry-After",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 503, Type: "overloaded_error", RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"})
			},
			steps: []step{{id: DemoCompleted, status: 503, check: func(t *testing.T, r response) {
				checkEnvelope(t, r, 503, "overloaded_error", "503")
				if got := r.header.Get("Retry-After"); got != "Wed, 21 Oct 2015 07:28:00 GMT" {
					t.Errorf("Retry-After %q", got)
				}
			}}, ok},
		},
		{
			name: "derived types",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 500}, Fault{Status: 402}, Fault{Status: 400}, Fault{Status: 404})
			},
			steps: []step{
				{id: DemoCompleted, status: 500, check: envelopeCheck(500, "api_error", "500")},
				{id: DemoCompleted, status: 402, check: envelopeCheck(402, "insufficient_balance", "402")},
				{id: DemoCompleted, status: 400, check: envelopeCheck(400, "invalid_request_error", "400")},
				{id: DemoCompleted, status: 404, check: envelopeCheck(404, "not_found_error", "404")},
				ok,
			},
		},
		{
			name: "truncated body",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Body: `{"id":"batch_demo_completed","obj`})
			},
			steps: []step{{id: DemoCompleted, status: 200, check: func(t *testing.T, r response) {
				if string(r.body) != `{"id":"batch_demo_completed","obj` || json.Valid(r.body) {
					t.Errorf("body %s", r.body)
				}
			}}, ok},
		},
		{
			name: "raw body with status",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 502, Body: "<html>bad gateway</html>", RetryAfter: "1"})
			},
			steps: []step{{id: DemoCompleted, status: 502, check: func(t *testing.T, r response) {
				if string(r.body) != "<html>bad gateway</html>" || r.header.Get("Retry-After") != "1" {
					t.Errorf("body %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
				}
			}}, ok},
		},
		{
			name: "reset",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Reset: true})
			},
			steps: []step{{id: DemoCompleted, status: 0}, ok},
		},
		{
			name: "delay then the normal answer",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Delay: time.Millisecond})
			},
			steps: []step{ok, ok},
		},
		{
			name: "delay then status",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Delay: time.Millisecond, Status: 503})
			},
			steps: []step{{id: DemoCompleted, status: 503}, ok},
		},
		{
			name: "status below 400 without body is the normal answer",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 200})
			},
			steps: []step{ok, ok},
		},
		{
			name: "any id",
			inject: func(sim *Simulator) {
				sim.InjectFaults("", Fault{Status: 500}, Fault{Status: 502})
			},
			steps: []step{
				{id: "batch_nope", status: 500},
				{id: DemoFailed, status: 502},
				{id: "batch_nope", status: 404},
				ok,
			},
		},
		{
			name: "id faults before any-id faults",
			inject: func(sim *Simulator) {
				sim.InjectFaults("", Fault{Status: 500})
				sim.InjectFaults(DemoCompleted, Fault{Status: 429}, Fault{Status: 503})
			},
			steps: []step{
				{id: DemoCompleted, status: 429},
				{id: DemoCompleted, status: 503},
				{id: DemoCompleted, status: 500},
				ok,
			},
		},
		{
			name: "other ids unaffected",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoFailed, Fault{Status: 500})
			},
			steps: []step{ok, {id: DemoFailed, status: 500}, {id: DemoFailed, status: 200}},
		},
		{
			name: "unauthenticated requests do not consume faults",
			inject: func(sim *Simulator) {
				sim.InjectFaults(DemoCompleted, Fault{Status: 500})
			},
			steps: []step{
				{id: DemoCompleted, auth: "-", status: 401},
				{id: DemoCompleted, auth: "Bearer wrong", status: 401},
				{id: DemoCompleted, status: 500},
				ok,
			},
		},
		{
			name:   "no faults injected",
			inject: func(sim *Simulator) { sim.InjectFaults(DemoCompleted) },
			steps:  []step{ok},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			tc.inject(e.sim)
			for i, s := range tc.steps {
				auth := s.auth
				switch auth {
				case "":
					auth = testBearer
				case "-":
					auth = ""
				}
				r, err := e.try(context.Background(), "GET", "/v1/batches/"+s.id, auth, "")
				if s.status == 0 {
					if err == nil {
						t.Fatalf("step %d: got %d %s, want a transport error", i, r.status, r.body)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if r.status != s.status {
					t.Fatalf("step %d: status %d, want %d; body %s", i, r.status, s.status, r.body)
				}
				if s.status == 200 && s.check == nil {
					if m := decodeMap(t, r.body); m["id"] != s.id {
						t.Errorf("step %d: body %s", i, r.body)
					}
				}
				if s.check != nil {
					s.check(t, r)
				}
			}
		})
	}
}

func envelopeCheck(status int, typ, code string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		checkEnvelope(t, r, status, typ, code)
	}
}

// TestFaultDelayClientGivesUp: a client that stops waiting ends the
// delayed handler (TestMain checks that nothing is left running).
func TestFaultDelayClientGivesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.sim.InjectFaults(DemoCompleted, Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.try(ctx, "GET", "/v1/batches/"+DemoCompleted, testBearer, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if r := e.do("GET", "/v1/batches/"+DemoCompleted, testBearer, ""); r.status != 200 {
		t.Fatalf("after the delay fault: %d", r.status)
	}
}

// TestFaultResetWithoutHijacker: where the connection cannot be hijacked
// the handler aborts with http.ErrAbortHandler.
func TestFaultResetWithoutHijacker(t *testing.T) {
	t.Parallel()
	sim := New(Options{})
	sim.InjectFaults("", Fault{Reset: true})
	req := httptest.NewRequest(http.MethodGet, "/v1/batches/"+DemoCompleted, nil)
	req.Header.Set("Authorization", "Bearer k")
	defer func() {
		if v := recover(); v != http.ErrAbortHandler { //nolint:errorlint // recover returns the value panicked with, unwrapped
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	sim.ServeHTTP(httptest.NewRecorder(), req)
}

func TestCounters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.sim.InjectFaults(DemoCompleted, Fault{Status: 500}, Fault{Reset: true})
	reqs := []struct{ method, path, auth string }{
		{"GET", "/v1/batches/" + DemoCompleted, testBearer}, // fault 500
		{"GET", "/v1/batches/" + DemoCompleted, testBearer}, // fault reset
		{"GET", "/v1/batches/" + DemoCompleted, testBearer}, // 200
		{"GET", "/v1/batches/" + DemoCompleted, ""},         // 401
		{"GET", "/v1/batches/batch_nope", testBearer},       // 404
		{"GET", "/v1/batches/" + DemoFailed, testBearer},    // 200
		{"DELETE", "/v1/batches/" + DemoFailed, testBearer}, // 405, not a GET
		{"GET", "/v1/batches", testBearer},
		{"POST", "/v1/batches/" + DemoFailed + "/cancel", testBearer},
		{"GET", "/v1/batches/" + DemoFailed + "/cancel", testBearer},
		{"GET", "/nope", testBearer},
	}
	for _, r := range reqs {
		_, _ = e.try(context.Background(), r.method, r.path, r.auth, "")
	}
	for id, want := range map[string]int64{DemoCompleted: 4, "batch_nope": 1, DemoFailed: 1, DemoExpired: 0, "": 0} {
		if got := e.sim.BatchRequests(id); got != want {
			t.Errorf("BatchRequests(%q) = %d, want %d", id, got, want)
		}
	}
	if got := e.sim.TotalRequests(); got != int64(len(reqs)) {
		t.Errorf("TotalRequests() = %d, want %d", got, len(reqs))
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, path string
		status       int
		typ, allow   string
	}{
		{"GET", "/v1/batches/batch_nope", 404, "not_found_error", ""},
		{"GET", "/v1/batches/bad%20id", 404, "not_found_error", ""},
		{"GET", "/v1/batches/", 404, "invalid_request_error", ""},
		{"GET", "/v1/batches/a/b", 404, "invalid_request_error", ""},
		{"POST", "/v1/batches//cancel", 404, "invalid_request_error", ""},
		{"GET", "/v1/batches/" + DemoCompleted + "/", 404, "invalid_request_error", ""},
		{"GET", "/v1/files/file_x/content", 404, "not_found_error", ""},
		{"GET", "/v1/files/file_x", 404, "not_found_error", ""},
		{"GET", "/v1/files/", 404, "invalid_request_error", ""},
		{"GET", "/v1/files/file_x/other", 404, "invalid_request_error", ""},
		{"GET", "/v1/files/file_x/content/", 404, "invalid_request_error", ""},
		{"GET", "/v1/filesx", 404, "invalid_request_error", ""},
		{"PUT", "/v1/files", 405, "invalid_request_error", "GET, POST"},
		{"POST", "/v1/files/file_x", 405, "invalid_request_error", "GET, DELETE"},
		{"DELETE", "/v1/files/file_x/content", 405, "invalid_request_error", "GET"},
		{"GET", "/", 404, "invalid_request_error", ""},
		{"GET", "/v1/batch", 404, "invalid_request_error", ""},
		{"DELETE", "/v1/batches/" + DemoCompleted, 405, "invalid_request_error", "GET"},
		{"POST", "/v1/batches/" + DemoCompleted, 405, "invalid_request_error", "GET"},
		{"PUT", "/v1/batches", 405, "invalid_request_error", "GET, POST"},
		{"GET", "/v1/batches/" + DemoCompleted + "/cancel", 405, "invalid_request_error", "POST"},
		{"POST", "/v1/batches/batch_nope/cancel", 404, "not_found_error", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			r := e.do(tc.method, tc.path, testBearer, "")
			if p := checkEnvelope(t, r, tc.status, tc.typ, ""); p != nil {
				t.Errorf("param %v", p)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestPut(t *testing.T) {
	t.Parallel()

	t.Run("returned as stored", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		b := wire.Batch{
			ID: "batch_future", Object: "batch", Status: "paused", InputFileID: "f",
			ErrorFileID: ptr(""), CreatedAt: ptr[wire.Int](1), Metadata: wire.Metadata{"a": "b"},
			Model: ptr("gpt-4o-mini"), Usage: &wire.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15},
		}
		extra := map[string]json.RawMessage{"future_field": json.RawMessage(`{"x":[1,2]}`), "id": json.RawMessage(`"ignored"`)}
		e.sim.PutWithExtra(b, extra)
		b.Metadata["a"] = "changed" // Put copied
		b.Usage.TotalTokens = 99
		extra["late"] = json.RawMessage(`1`)
		_, m := e.get("batch_future")
		if m["status"] != "paused" || m["id"] != "batch_future" || m["model"] != "gpt-4o-mini" || m["error_file_id"] != "" {
			t.Errorf("%v", m)
		}
		if md := m["metadata"].(map[string]any); md["a"] != "b" {
			t.Errorf("metadata %v", md)
		}
		if u, _ := m["usage"].(map[string]any); u["total_tokens"] != float64(15) {
			t.Errorf("usage %v", m["usage"])
		}
		if f, _ := m["future_field"].(map[string]any); f == nil {
			t.Errorf("future_field %v", m["future_field"])
		}
		if _, ok := m["late"]; ok {
			t.Error("extra changed after Put shows")
		}
		e.clock.Advance(1000 * time.Hour)
		if _, later := e.get("batch_future"); later["status"] != "paused" {
			t.Errorf("static batch changed: %v", later)
		}
	})

	t.Run("replaces a progressing batch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.sim.Put(wire.Batch{ID: DemoProgress, Object: "batch", Status: StatusFinalizing, CreatedAt: unix(t0)})
		e.clock.Advance(time.Hour)
		if b, _ := e.get(DemoProgress); b.Status != StatusFinalizing {
			t.Errorf("status %s", b.Status)
		}
		var l struct {
			Data []wire.Batch `json:"data"`
		}
		r := e.do("GET", "/v1/batches?limit=100", testBearer, "")
		if err := json.Unmarshal(r.body, &l); err != nil || len(l.Data) != 6 {
			t.Fatalf("list: %v, %d items", err, len(l.Data))
		}
	})

	t.Run("invalid extra is a 500", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.sim.PutWithExtra(wire.Batch{ID: "batch_bad"}, map[string]json.RawMessage{"x": json.RawMessage(`{`)})
		checkEnvelope(t, e.do("GET", "/v1/batches/batch_bad", testBearer, ""), 500, "api_error", "")
	})

	t.Run("empty id panics", func(t *testing.T) {
		t.Parallel()
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		New(Options{}).Put(wire.Batch{})
	})
}

func TestCreateReturnsACopy(t *testing.T) {
	t.Parallel()
	sim := New(Options{})
	md := map[string]string{"k": "v"}
	b := sim.Create(CreateRequest{InputFileID: "f", Metadata: md})
	b.Metadata["k"] = "changed"
	md["k"] = "changed too"
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/batches/"+b.ID, nil)
	req.Header.Set("Authorization", "Bearer x")
	sim.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"metadata":{"k":"v"}`) {
		t.Errorf("stored batch changed through Create's argument or result: %s", rec.Body)
	}
}

// TestConcurrent mixes every operation from several goroutines; run it
// with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Phase: time.Second})
	in := e.upload("in.jsonl", numberedInput(10, 3))
	const workers, perWorker = 6, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				var r response
				var err error
				switch i % 6 {
				case 0:
					r, err = e.try(context.Background(), "GET", "/v1/batches/"+DemoProgress, testBearer, "")
				case 1:
					r, err = e.try(context.Background(), "GET", "/v1/batches?limit=5", testBearer, "")
				case 2:
					r, err = e.try(context.Background(), "POST", "/v1/batches", testBearer,
						`{"input_file_id":"`+in.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`)
				case 3:
					b := e.sim.Create(CreateRequest{InputFileID: "f"})
					r, err = e.try(context.Background(), "POST", "/v1/batches/"+b.ID+"/cancel", testBearer, "")
				case 4:
					// Every worker queues its fault before its GET, so
					// every GET finds one.
					e.sim.InjectFaults(DemoCompleted, Fault{Status: 503})
					r, err = e.try(context.Background(), "GET", "/v1/batches/"+DemoCompleted, testBearer, "")
					if err == nil && r.status == 503 {
						r.status = 200
					} else if err == nil {
						r.status = -r.status
					}
				case 5:
					e.clock.Advance(100 * time.Millisecond)
					e.sim.Put(wire.Batch{ID: fmt.Sprintf("batch_put_%d", w), Object: "batch", Status: "completed"})
					_ = e.sim.BatchRequests(DemoProgress)
					r, err = e.try(context.Background(), "GET", fmt.Sprintf("/v1/batches/batch_put_%d", w), testBearer, "")
				}
				if err != nil || r.status != 200 {
					t.Errorf("worker %d op %d: %v %d %s", w, i, err, r.status, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := e.sim.TotalRequests(), int64(workers*perWorker+1); got != want {
		t.Errorf("TotalRequests() = %d, want %d", got, want)
	}
}

func BenchmarkGetBatch(b *testing.B) {
	for _, id := range []string{DemoCompleted, DemoProgress} {
		b.Run(id, func(b *testing.B) {
			sim := New(Options{APIKey: testKey})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "/v1/batches/"+id, nil)
				req.Header.Set("Authorization", testBearer)
				for pb.Next() {
					rec := httptest.NewRecorder()
					sim.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d", rec.Code)
					}
				}
			})
		})
	}
}
