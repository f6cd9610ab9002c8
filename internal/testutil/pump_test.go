package testutil

import (
	"errors"
	"io"
	"testing"
	"time"
)

// sliceStream returns its messages, then io.EOF.
type sliceStream struct{ msgs []int }

func (s *sliceStream) Recv() (int, error) {
	if len(s.msgs) == 0 {
		return 0, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

// blockStream never returns.
type blockStream struct{ stop chan struct{} }

func (s blockStream) Recv() (int, error) {
	<-s.stop
	return 0, io.ErrClosedPipe
}

func TestNextReturnsQueuedMessagesBeforeTheEnd(t *testing.T) {
	t.Parallel()
	for round := range 50 { // a select between the two channels picks at random
		events, done := Pump[int](&sliceStream{msgs: []int{1, 2, 3}}, 8)
		// Wait until the end is queued behind all three messages.
		for len(done) == 0 {
			time.Sleep(time.Millisecond)
		}
		for want := 1; want <= 3; want++ {
			if m, err := Next(events, done, time.Second); err != nil || m != want {
				t.Fatalf("round %d: Next = %d, %v; want %d", round, m, err, want)
			}
		}
		for range 2 { // and the end stays reported
			if _, err := Next(events, done, time.Second); !errors.Is(err, io.EOF) {
				t.Fatalf("round %d: Next at the end = %v, want io.EOF", round, err)
			}
		}
	}
}

func TestNextTimesOut(t *testing.T) {
	t.Parallel()
	s := blockStream{stop: make(chan struct{})}
	events, done := Pump[int](s, 1)
	if _, err := Next(events, done, 10*time.Millisecond); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("Next = %v, want ErrNoMessage", err)
	}
	close(s.stop)
	if _, err := Next(events, done, time.Second); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Next after the end = %v, want the stream's error", err)
	}
}
