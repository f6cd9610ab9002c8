package wire

import (
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// TestStatusRoundTrip: every named enum value but UNSPECIFIED has a string
// that maps back to it, and the strings are the upstream's documented ones.
func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	want := map[batchv1.BatchStatus]string{
		batchv1.BatchStatus_BATCH_STATUS_VALIDATING:  "validating",
		batchv1.BatchStatus_BATCH_STATUS_FAILED:      "failed",
		batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS: "in_progress",
		batchv1.BatchStatus_BATCH_STATUS_FINALIZING:  "finalizing",
		batchv1.BatchStatus_BATCH_STATUS_COMPLETED:   "completed",
		batchv1.BatchStatus_BATCH_STATUS_EXPIRED:     "expired",
		batchv1.BatchStatus_BATCH_STATUS_CANCELLING:  "cancelling",
		batchv1.BatchStatus_BATCH_STATUS_CANCELLED:   "cancelled",
	}
	if n := len(batchv1.BatchStatus_name) - 1; n != len(want) {
		t.Fatalf("the enum has %d named statuses, the table %d: update the table", n, len(want))
	}
	for s, str := range want {
		if got := StatusString(s); got != str {
			t.Errorf("StatusString(%v) = %q, want %q", s, got, str)
		}
		if got := StatusFromString(str); got != s {
			t.Errorf("StatusFromString(%q) = %v, want %v", str, got, s)
		}
	}
	for _, s := range []string{"", "Completed", "COMPLETED", "canceled", "unspecified", "paused"} {
		if got := StatusFromString(s); got != batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED {
			t.Errorf("StatusFromString(%q) = %v, want UNSPECIFIED", s, got)
		}
	}
	for _, s := range []batchv1.BatchStatus{batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED, 99, -1} {
		if got := StatusString(s); got != "" {
			t.Errorf("StatusString(%v) = %q, want \"\"", s, got)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		b    *batchv1.Batch
		want bool
	}{
		{nil, false},
		{&batchv1.Batch{}, false},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_VALIDATING}, false},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS}, false},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_FINALIZING}, false},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_CANCELLING}, false},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED}, true},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_FAILED}, true},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_EXPIRED}, true},
		{&batchv1.Batch{Status: batchv1.BatchStatus_BATCH_STATUS_CANCELLED}, true},
		{&batchv1.Batch{Status: 99, UpstreamStatus: "completed"}, false},
	}
	for _, tt := range tests {
		if got := IsTerminal(tt.b); got != tt.want {
			t.Errorf("IsTerminal(%v) = %v, want %v", tt.b, got, tt.want)
		}
	}
}
