package wire

import (
	"strings"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

const statusPrefix = "BATCH_STATUS_"

// statusByString and stringByStatus are derived from the generated enum
// names: BATCH_STATUS_IN_PROGRESS is "in_progress".
var statusByString, stringByStatus = func() (map[string]batchv1.BatchStatus, map[batchv1.BatchStatus]string) {
	byString := make(map[string]batchv1.BatchStatus, len(batchv1.BatchStatus_name))
	byStatus := make(map[batchv1.BatchStatus]string, len(batchv1.BatchStatus_name))
	for v, name := range batchv1.BatchStatus_name {
		s := batchv1.BatchStatus(v)
		if s == batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED {
			continue
		}
		str := strings.ToLower(strings.TrimPrefix(name, statusPrefix))
		byString[str] = s
		byStatus[s] = str
	}
	return byString, byStatus
}()

// StatusFromString returns the enum value of an upstream status string
// such as "in_progress", or BATCH_STATUS_UNSPECIFIED for a string this
// build does not know (matching is exact: "Completed" is unknown).
func StatusFromString(s string) batchv1.BatchStatus {
	return statusByString[s]
}

// StatusString returns the upstream's string for s, such as "in_progress",
// or "" for BATCH_STATUS_UNSPECIFIED and values this build does not know.
func StatusString(s batchv1.BatchStatus) string {
	return stringByStatus[s]
}

// IsTerminal reports whether b has a terminal status: completed, failed,
// expired or cancelled. A batch with an unknown status
// (BATCH_STATUS_UNSPECIFIED) is never terminal, nor is a nil batch.
func IsTerminal(b *batchv1.Batch) bool {
	return IsTerminalStatus(b.GetStatus())
}

// IsTerminalStatus reports whether s can no longer change.
func IsTerminalStatus(s batchv1.BatchStatus) bool {
	switch s {
	case batchv1.BatchStatus_BATCH_STATUS_COMPLETED,
		batchv1.BatchStatus_BATCH_STATUS_FAILED,
		batchv1.BatchStatus_BATCH_STATUS_EXPIRED,
		batchv1.BatchStatus_BATCH_STATUS_CANCELLED:
		return true
	}
	return false
}
