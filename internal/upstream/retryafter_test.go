package upstream

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const limit = time.Minute
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"none", nil, 0},
		{"seconds", map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"padded", map[string]string{"Retry-After": " 5 "}, 5 * time.Second},
		{"negative seconds", map[string]string{"Retry-After": "-5"}, 0},
		{"capped seconds", map[string]string{"Retry-After": "120"}, limit},
		{"huge seconds", map[string]string{"Retry-After": "99999999999999999999999"}, limit},
		{"fractional seconds are not a valid form", map[string]string{"Retry-After": "1.5"}, 0},
		{"IMF-fixdate", map[string]string{"Retry-After": now.Add(30 * time.Second).Format(http.TimeFormat)}, 30 * time.Second},
		{"RFC 850 date", map[string]string{"Retry-After": now.Add(10 * time.Second).Format(time.RFC850)}, 10 * time.Second},
		{"ANSI C date", map[string]string{"Retry-After": now.Add(20 * time.Second).Format(time.ANSIC)}, 20 * time.Second},
		{"past date", map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)}, 0},
		{"far future date", map[string]string{"Retry-After": now.Add(24 * time.Hour).Format(http.TimeFormat)}, limit},
		{"garbage", map[string]string{"Retry-After": "later"}, 0},
		{"ms", map[string]string{"Retry-After-Ms": "250"}, 250 * time.Millisecond},
		{"ms fractional", map[string]string{"Retry-After-Ms": "1.5"}, 1500 * time.Microsecond},
		{"ms wins over seconds", map[string]string{"Retry-After-Ms": "250", "Retry-After": "30"}, 250 * time.Millisecond},
		{"bad ms falls back", map[string]string{"Retry-After-Ms": "soon", "Retry-After": "2"}, 2 * time.Second},
		{"negative ms", map[string]string{"Retry-After-Ms": "-10"}, 0},
		{"ms NaN falls back", map[string]string{"Retry-After-Ms": "NaN", "Retry-After": "2"}, 2 * time.Second},
		{"ms Inf capped", map[string]string{"Retry-After-Ms": "Inf"}, limit},
		{"ms huge capped", map[string]string{"Retry-After-Ms": "1e400"}, limit},
		{"ms max int", map[string]string{"Retry-After-Ms": strconv.FormatInt(math.MaxInt64, 10)}, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := parseRetryAfter(h, now, limit); got != tt.want {
				t.Errorf("parseRetryAfter(%v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfterNoLimit(t *testing.T) {
	t.Parallel()
	h := http.Header{"Retry-After": {"3600"}}
	if got := parseRetryAfter(h, time.Now(), 0); got != time.Hour {
		t.Errorf("got %v", got)
	}
}
