package testutil

import (
	"errors"
	"time"
)

// Pump reads a stream in the background: every message Recv returns goes
// to events (buffered, size buffer), then the first error, io.EOF for a
// clean end, to done (buffered, size 1), and the goroutine returns. It
// blocks while events is full. A gRPC client stream, such as
// BatchService_WatchBatchClient, is such a stream; cancel its context to
// end the goroutine early. Read the two with Next, which does not report
// the end while messages sent before it are still queued.
func Pump[T any](stream interface{ Recv() (T, error) }, buffer int) (events chan T, done chan error) {
	events, done = make(chan T, buffer), make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				done <- err
				return
			}
			events <- m
		}
	}()
	return events, done
}

// ErrNoMessage is Next's error when nothing came within its limit.
var ErrNoMessage = errors.New("no message within the limit")

// Next returns the next message of a stream read by Pump, or its end's
// error once every message before the end has been returned (the end
// stays reported: a later Next returns it again), or ErrNoMessage when
// neither came within limit.
func Next[T any](events chan T, done chan error, limit time.Duration) (T, error) {
	var zero T
	select {
	case m := <-events:
		return m, nil
	case err := <-done:
		done <- err // for a later Next; and events queued before it come first
		select {
		case m := <-events:
			return m, nil
		default:
			return zero, err
		}
	case <-time.After(limit):
		return zero, ErrNoMessage
	}
}
