package simulator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/wire"
)

// clock is a fake clock for the examples.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// get fetches a batch and returns the HTTP status and the batch's status.
func get(srv *httptest.Server, id string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/batches/"+id, nil)
	req.Header.Set("Authorization", "Bearer sk-demo")
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(body, &b)
	return resp.StatusCode, b.Status
}

// A simulator on a test server, walked through a batch's lifecycle with a
// fake clock.
func Example() {
	clk := &clock{t: time.Unix(1710000000, 0)}
	sim := simulator.New(simulator.Options{APIKey: "sk-demo", Now: clk.Now, Phase: 10 * time.Second})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	b := sim.Create(simulator.CreateRequest{InputFileID: "file_abc123"})
	for range 4 {
		_, status := get(srv, b.ID)
		fmt.Println(status)
		clk.Advance(10 * time.Second)
	}
	_, status := get(srv, simulator.DemoCompleted)
	fmt.Println(simulator.DemoCompleted, status)
	fmt.Println(sim.BatchRequests(b.ID), "GETs")
	// Output:
	// validating
	// in_progress
	// finalizing
	// completed
	// batch_demo_completed completed
	// 4 GETs
}

// Faults make the next GETs fail, once each.
func ExampleSimulator_InjectFaults() {
	sim := simulator.New(simulator.Options{APIKey: "sk-demo"})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	sim.InjectFaults(simulator.DemoCompleted,
		simulator.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"},
		simulator.Fault{Status: http.StatusServiceUnavailable},
	)
	for range 3 {
		code, _ := get(srv, simulator.DemoCompleted)
		fmt.Println(code)
	}
	// Output:
	// 429
	// 503
	// 200
}

// call sends one request with the demo key and decodes a JSON answer into
// v (when not nil); it returns the HTTP status.
func call(srv *httptest.Server, method, path, contentType string, body io.Reader, v any) int {
	req, _ := http.NewRequest(method, srv.URL+path, body)
	req.Header.Set("Authorization", "Bearer sk-demo")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if v != nil {
		_ = json.Unmarshal(data, v)
	}
	return resp.StatusCode
}

// Upload an input file, run a batch of it and read its results.
func Example_files() {
	clk := &clock{t: time.Unix(1710000000, 0)}
	sim := simulator.New(simulator.Options{APIKey: "sk-demo", Now: clk.Now, Phase: 10 * time.Second})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	for _, id := range []string{"req-1", "fail-2", "req-3"} {
		fmt.Fprintf(fw, `{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"}}`+"\n", id)
	}
	_ = mw.Close()
	var f wire.File
	call(srv, http.MethodPost, "/v1/files", mw.FormDataContentType(), &body, &f)

	var b wire.Batch
	call(srv, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(
		`{"input_file_id":"`+f.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`), &b)
	clk.Advance(30 * time.Second) // validating, in_progress, finalizing
	call(srv, http.MethodGet, "/v1/batches/"+b.ID, "", nil, &b)
	fmt.Println(b.Status, b.RequestCounts.Completed, "completed", b.RequestCounts.Failed, "failed")

	for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		content, _ := sim.FileContent(*id)
		for line := range strings.Lines(string(content)) {
			var r wire.ResultLine
			_ = json.Unmarshal([]byte(line), &r)
			fmt.Println(r.CustomID, r.Response.StatusCode)
		}
	}
	// Output:
	// completed 2 completed 1 failed
	// req-1 200
	// req-3 200
	// fail-2 400
}

// A create that takes effect but is answered 500: a client that retries it
// makes a second batch.
func ExampleSimulator_InjectCreateFaults() {
	sim := simulator.New(simulator.Options{APIKey: "sk-demo"})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	sim.InjectCreateFaults(simulator.Fault{Status: http.StatusInternalServerError, AfterApply: true})
	body := `{"input_file_id":"` + simulator.DemoInputFile + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	for range 2 {
		status := call(srv, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(body), nil)
		fmt.Println(status, sim.Creates(), "made")
	}
	// Output:
	// 500 1 made
	// 200 2 made
}
