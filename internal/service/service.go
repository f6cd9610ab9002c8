// Package service implements batch.v1.BatchService on top of a Batches
// source (the upstream client, or the shared poller hub in front of it).
// Every error it returns has passed through apierr.FromError.
package service

import (
	"context"
	"log/slog"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/upstream"
)

// Batches is what the service needs from the upstream: one batch by id.
// *upstream.Client satisfies it.
type Batches interface {
	// GetBatch returns the batch with the given (already validated) id.
	GetBatch(ctx context.Context, batchID string) (*batchv1.Batch, error)
}

// Service implements batchv1.BatchServiceServer. Create it with New; the
// zero value is not usable.
type Service struct {
	batchv1.UnimplementedBatchServiceServer

	batches Batches
	log     *slog.Logger
}

// New returns a Service that reads batches from b and logs upstream
// failures to log (nil: discard).
func New(b Batches, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{batches: b, log: log}
}

// GetBatch validates the batch id, fetches the batch and returns it. Errors
// are gRPC statuses from apierr.FromError: InvalidArgument for a bad id, and
// the upstream's failure mapped by its table otherwise.
func (s *Service) GetBatch(ctx context.Context, req *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	id := req.GetBatchId()
	if err := upstream.ValidateBatchID(id); err != nil {
		return nil, apierr.FromError(err).Err()
	}
	b, err := s.batches.GetBatch(ctx, id)
	if err != nil {
		st := apierr.FromError(err)
		s.log.LogAttrs(ctx, slog.LevelWarn, "get batch failed",
			slog.String("batch_id", id), slog.String("code", st.Code().String()), slog.String("error", err.Error()))
		return nil, st.Err()
	}
	return &batchv1.GetBatchResponse{Batch: b}, nil
}
