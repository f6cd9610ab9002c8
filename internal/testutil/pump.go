package testutil

// Pump reads a stream in the background: every message Recv returns goes
// to events (buffered, size buffer), then the first error, io.EOF for a
// clean end, to done (buffered, size 1), and the goroutine returns. It
// blocks while events is full. A gRPC client stream, such as
// BatchService_WatchBatchClient, is such a stream; cancel its context to
// end the goroutine early.
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
