package loadtest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestFailoverTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		home, conn, n int
		want          []int // attempts 0, 1, 2, ...
	}{
		{"two replicas: always the other", 0, 5, 2, []int{1, 1, 1}},
		{"three, even connection: the next first", 0, 0, 3, []int{1, 2, 1, 2}},
		{"three, odd connection: the one after", 0, 1, 3, []int{2, 1, 2}},
		{"three, from the last replica", 2, 0, 3, []int{0, 1, 0}},
		{"four replicas rotate over the three others", 1, 1, 4, []int{3, 0, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []int
			for a := range tt.want {
				got = append(got, failoverTarget(tt.home, tt.conn, a, tt.n))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("failoverTarget(home %d, conn %d, n %d) over attempts = %v, want %v", tt.home, tt.conn, tt.n, got, tt.want)
			}
		})
	}
}

func TestFailoverWait(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for attempt, want := range map[int]time.Duration{0: 0, 1: 0, 2: 100 * ms, 3: 200 * ms, 4: 400 * ms, 5: 800 * ms, 6: time.Second, 50: time.Second} {
		if got := failoverWait(attempt); got != want {
			t.Errorf("failoverWait(%d) = %v, want %v", attempt, got, want)
		}
	}
}

// TestOpenAllWaves: no client of a wave starts before every client of the
// one before has opened, and a failed open counts.
func TestOpenAllWaves(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	log := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	cs := openAll(context.Background(), [][]int{{0, 1, 2}, {3, 4}}, 2, func(ctx context.Context, i int, opened func(error)) {
		log("start")
		time.Sleep(time.Duration(5-i) * time.Millisecond)
		if i == 4 {
			opened(context.DeadlineExceeded)
			return
		}
		log("open")
		opened(nil)
		<-ctx.Done()
	})
	cs.Stop()
	// Three starts and three opens (in some order) before the next wave.
	first := slices.Clone(events[:6])
	slices.Sort(first)
	if !slices.Equal(first, []string{"open", "open", "open", "start", "start", "start"}) || len(events) != 9 {
		t.Errorf("events %v: the second wave started before the first opened", events)
	}
	if cs.OpenErrors != 1 {
		t.Errorf("OpenErrors = %d, want 1", cs.OpenErrors)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	withRetry := func(d time.Duration) error {
		st, err := status.New(codes.Unavailable, "shutting down").WithDetails(
			&errdetails.ErrorInfo{Reason: "SHUTTING_DOWN"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"RetryInfo among the details", withRetry(time.Second), time.Second},
		{"no details", status.Error(codes.Unavailable, "EOF"), 0},
		{"not a gRPC error", errors.New("stream ended"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retryDelay(tt.err); got != tt.want {
				t.Errorf("retryDelay = %v, want %v", got, tt.want)
			}
		})
	}
}
