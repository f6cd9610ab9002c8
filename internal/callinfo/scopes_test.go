package callinfo_test

import (
	"testing"

	"github.com/batchgate/batchgate/internal/callinfo"
)

func TestParseScopes(t *testing.T) {
	t.Parallel()
	const r, w, a = callinfo.ScopeRead, callinfo.ScopeWrite, callinfo.ScopeAll
	tests := []struct {
		in      string
		want    callinfo.Scopes
		wantErr bool
	}{
		{"read", r, false},
		{"write", w, false},
		{"read,write", r | w, false},
		{"write,read", r | w, false},
		{"all", r | w | a, false},
		{"read,all", r | a, false},
		{"read,write,all", r | w | a, false},
		{"", 0, true},
		{"read,", 0, true},
		{"READ", 0, true},
		{"read,read", 0, true},
		{"admin", 0, true},
		{"read write", 0, true},
	}
	for _, tt := range tests {
		got, err := callinfo.ParseScopes(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseScopes(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if again, err := callinfo.ParseScopes(got.String()); err != nil || again != got {
				t.Errorf("ParseScopes(%q.String() = %q) = %v, %v", tt.in, got.String(), again, err)
			}
		}
	}
	if !(r | w).Has(r) || (r).Has(r|w) || !callinfo.Unrestricted.Has(a) || callinfo.DefaultScopes.Has(a) {
		t.Error("Has is wrong")
	}
}
