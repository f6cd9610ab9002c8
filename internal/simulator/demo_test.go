package simulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

// TestDemoFiles: the demo's canned files are served, listed and agree with
// the demo batches that name them.
func TestDemoFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	if got := e.sim.storedBytes(); got != 0 {
		t.Errorf("the demo files count %d bytes against the store", got)
	}
	var ids []string
	for _, f := range e.listFiles("", 2) {
		ids = append(ids, f.ID)
	}
	if want := []string{DemoOutputFile, DemoExpiredErrorFile, DemoExpiredOutputFile, DemoInputFile}; !slices.Equal(ids, want) {
		t.Errorf("demo files %v, want %v", ids, want)
	}
	if in := e.listFiles("&purpose=batch", 10); len(in) != 1 || in[0].ID != DemoInputFile || in[0].Filename != "batch_input.jsonl" {
		t.Errorf("demo input files %+v", in)
	}
	// Every file a demo batch names at New is served.
	for _, id := range e.sim.DemoBatchIDs() {
		b, _ := e.get(id)
		for _, f := range []*string{b.OutputFileID, b.ErrorFileID} {
			if f != nil {
				if r := e.do("GET", "/v1/files/"+*f, testBearer, ""); r.status != 200 {
					t.Errorf("%s names %s: %d %s", id, *f, r.status, r.body)
				}
			}
		}
	}

	t.Run("completed", func(t *testing.T) {
		t.Parallel()
		b, _ := e.get(DemoCompleted)
		if b.InputFileID != DemoInputFile || !eqPtr(b.OutputFileID, ptr(DemoOutputFile)) {
			t.Fatalf("%s names %s and %s", DemoCompleted, b.InputFileID, str(b.OutputFileID))
		}
		input := string(e.content(DemoInputFile))
		lines, errs := readInput([]byte(input), SupportedEndpoint)
		if errs != nil || len(lines) != 2 {
			t.Fatalf("demo input: %d requests, errors %v", len(lines), errs)
		}
		checkResults(t, e, b, input, 2)
		// A batch can be made of it.
		if nb := e.createFrom(DemoInputFile, ""); counts(&nb).Total != 2 {
			t.Errorf("batch of the demo input: %+v", nb)
		}
	})

	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		b, _ := e.get(DemoExpired)
		rc := counts(&b)
		out := bytes.Split(bytes.TrimSuffix(e.content(DemoExpiredOutputFile), []byte("\n")), []byte("\n"))
		if len(out) != int(rc.Completed) {
			t.Errorf("%d output lines, want %d", len(out), rc.Completed)
		}
		seen := map[string]bool{}
		for i, line := range out {
			var r wire.ResultLine
			err := json.Unmarshal(line, &r)
			if i == 1 {
				if err == nil || json.Valid(line) {
					t.Errorf("line 2 is valid JSON: %s", line)
				}
				continue
			}
			if err != nil || r.Response == nil || r.Response.StatusCode != http.StatusOK || r.Error != nil || seen[r.CustomID] || !resultIDRE.MatchString(r.ID) {
				t.Errorf("line %d: %v %s", i+1, err, line)
			}
			seen[r.CustomID] = true
		}
		errs := parseResults(t, e.content(DemoExpiredErrorFile))
		if len(errs) != int(rc.Failed) {
			t.Fatalf("%d error lines, want %d", len(errs), rc.Failed)
		}
		var shapes []string
		for _, r := range errs {
			switch {
			case r.Response != nil && r.Response.StatusCode == http.StatusBadRequest && r.Error == nil:
				shapes = append(shapes, "400")
			case r.Response == nil && r.Error != nil && r.Error.Code != "" && r.Error.Message != "":
				shapes = append(shapes, "error")
			default:
				t.Errorf("error line %+v", r)
			}
			if seen[r.CustomID] {
				t.Errorf("%s both succeeded and failed", r.CustomID)
			}
		}
		if !slices.Equal(shapes, []string{"400", "400", "error", "error"}) {
			t.Errorf("error lines %v", shapes)
		}
	})
}

// TestSyntheticFiles: the output and error files of batches of synthetic
// requests (the moving demo batches, Create with an unknown file) are
// served, though not stored.
func TestSyntheticFiles(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	const out, errf = "file_out_demo_progress", "file_err_demo_progress"

	// wantIDs are the custom_ids of the first ran synthetic requests that
	// succeeded, or failed.
	wantIDs := func(ran int, failed bool) []string {
		var ids []string
		for n := 1; n <= ran; n++ {
			if (n%25 == 0) == failed {
				ids = append(ids, "request-"+strconv.Itoa(n))
			}
		}
		return ids
	}
	check := func(t *testing.T, e *env, b wire.Batch) (output, errors []byte) {
		t.Helper()
		rc := counts(&b)
		ran := int(rc.Completed + rc.Failed)
		for _, f := range []struct {
			id     *string
			failed bool
			data   *[]byte
		}{{b.OutputFileID, false, &output}, {b.ErrorFileID, true, &errors}} {
			if f.id == nil {
				t.Fatalf("%s %s without a file", b.ID, b.Status)
			}
			data := e.content(*f.id)
			*f.data = data
			var meta wire.File
			if err := json.Unmarshal(e.do("GET", "/v1/files/"+*f.id, testBearer, "").body, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.ID != *f.id || int(meta.Bytes) != len(data) || meta.Purpose != "batch_output" || !eqPtr(&meta.CreatedAt, terminalAt(&b)) {
				t.Errorf("file %+v", meta)
			}
			if again := e.content(*f.id); !bytes.Equal(again, data) {
				t.Errorf("%s changed between two reads", *f.id)
			}
			if stored, ok := e.sim.FileContent(*f.id); !ok || !bytes.Equal(stored, data) {
				t.Errorf("FileContent(%s) differs", *f.id)
			}
			var got []string
			for _, r := range parseResults(t, data) {
				got = append(got, r.CustomID)
				want := wire.Int(200)
				if f.failed {
					want = 400
				}
				if r.Response == nil || r.Response.StatusCode != want || r.Error != nil {
					t.Errorf("%s: %+v", *f.id, r)
				}
			}
			if want := wantIDs(ran, f.failed); !slices.Equal(got, want) {
				t.Errorf("%s: %d custom_ids, want %d", *f.id, len(got), len(want))
			}
		}
		return output, errors
	}

	t.Run("demo progress", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		e.clock.Set(t0.Add(2 * phase))
		for _, id := range []string{out, errf} {
			checkEnvelope(t, e.do("GET", "/v1/files/"+id, testBearer, ""), 404, "not_found_error", "not_found")
		}
		e.clock.Set(t0.Add(3 * phase))
		b, _ := e.get(DemoProgress)
		first, _ := check(t, e, b)
		if got := e.sim.storedBytes(); got != 0 {
			t.Errorf("store holds %d bytes", got)
		}
		for _, f := range e.listFiles("", 100) {
			if f.ID == out || f.ID == errf {
				t.Errorf("%s listed", f.ID)
			}
		}
		// Deleted, it is gone for the run.
		if r := e.do("DELETE", "/v1/files/"+out, testBearer, ""); r.status != 200 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		checkEnvelope(t, e.do("GET", "/v1/files/"+out+"/content", testBearer, ""), 404, "not_found_error", "not_found")
		checkEnvelope(t, e.do("DELETE", "/v1/files/"+out, testBearer, ""), 404, "not_found_error", "not_found")
		if r := e.do("GET", "/v1/files/"+errf, testBearer, ""); r.status != 200 {
			t.Errorf("error file after the output's delete: %d", r.status)
		}
		// The next run has its own.
		e.clock.Set(t0.Add(7 * phase))
		b, _ = e.get(DemoProgress)
		second, _ := check(t, e, b)
		if bytes.Equal(first, second) {
			t.Error("two runs have the same output")
		}
	})

	t.Run("created and cancelled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		b := e.sim.Create(CreateRequest{InputFileID: "file_in"})
		e.clock.Set(t0.Add(phase * 19 / 10)) // 90 of 100 run
		e.do("POST", "/v1/batches/"+b.ID+"/cancel", testBearer, "")
		e.clock.Advance(phase)
		b, _ = e.get(b.ID)
		if b.Status != StatusCancelled || counts(&b).Completed+counts(&b).Failed != 90 {
			t.Fatalf("%s %+v", b.Status, counts(&b))
		}
		check(t, e, b)
	})

	t.Run("static batches have none", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		e.sim.Put(wire.Batch{ID: "batch_static", Object: "batch", Status: StatusCompleted, OutputFileID: ptr("file_out_static")})
		checkEnvelope(t, e.do("GET", "/v1/files/file_out_static", testBearer, ""), 404, "not_found_error", "not_found")
	})
}
