package upstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	good, bad, unknown := HealthGood, HealthBad, HealthUnknown
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{"success", nil, Outcome{Health: good}},
		{"301 redirect", &Error{HTTPStatus: 301}, Outcome{Health: bad}},
		{"304", &Error{HTTPStatus: 304}, Outcome{Health: bad}},
		{"100", &Error{HTTPStatus: 100}, Outcome{Health: bad}},
		{"400", &Error{HTTPStatus: 400}, Outcome{Permanent: true, Health: good}},
		{"401", &Error{HTTPStatus: 401}, Outcome{Permanent: true, Health: good}},
		{"402", &Error{HTTPStatus: 402}, Outcome{Permanent: true, Health: good}},
		{"404", &Error{HTTPStatus: 404}, Outcome{Permanent: true, Health: good}},
		{"408", &Error{HTTPStatus: 408}, Outcome{Retryable: true, Health: bad}},
		{"409", &Error{HTTPStatus: 409}, Outcome{Retryable: true, Health: good}},
		{"429", &Error{HTTPStatus: 429}, Outcome{Retryable: true, RateLimited: true, Health: bad}},
		{"499", &Error{HTTPStatus: 499}, Outcome{Permanent: true, Health: good}},
		{"500", &Error{HTTPStatus: 500}, Outcome{Retryable: true, Health: bad}},
		{"501", &Error{HTTPStatus: 501}, Outcome{Retryable: true, Health: bad}},
		{"503 wrapped", fmt.Errorf("poll: %w", &Error{HTTPStatus: 503}), Outcome{Retryable: true, Health: bad}},
		{"599", &Error{HTTPStatus: 599}, Outcome{Retryable: true, Health: bad}},
		{"unreachable", unreachableError(errors.New("connection refused")), Outcome{Retryable: true, Health: bad}},
		{"attempt timeout", timeoutError(0), Outcome{Retryable: true, Health: bad}},
		{"malformed", fmt.Errorf("%w: x", ErrMalformedResponse), Outcome{Health: bad}},
		{"too large", ErrResponseTooLarge, Outcome{Health: bad}},
		{"invalid batch id", fmt.Errorf("%w: x", ErrInvalidBatchID), Outcome{Permanent: true, Health: unknown}},
		{"caller canceled", callerContextError(context.Canceled, nil), Outcome{Health: unknown}},
		{"caller deadline", callerContextError(context.DeadlineExceeded, &Error{HTTPStatus: 503}), Outcome{Health: bad}},
		{"unknown error", errors.New("boom"), Outcome{Health: bad}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}
