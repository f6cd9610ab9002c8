package simulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/batchgate/batchgate/internal/simulator"
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
