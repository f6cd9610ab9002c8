package ownership_test

import (
	"fmt"
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
)

func batchOf(owner string) *batchv1.Batch {
	b := &batchv1.Batch{Id: "batch_1", InputFileId: "file_in", OutputFileId: new("file_out")}
	if owner != "" {
		b.Metadata = &batchv1.Metadata{Pairs: map[string]string{ownership.MetaCaller: owner}}
	}
	return b
}

func TestCanSeeBatch(t *testing.T) {
	t.Parallel()
	alice := callinfo.Caller{Name: "alice", Scopes: callinfo.DefaultScopes}
	ops := callinfo.Caller{Name: "ops", Scopes: callinfo.ScopeRead | callinfo.ScopeAll}
	anon := callinfo.Caller{Name: "anonymous", Scopes: callinfo.Unrestricted}
	tests := []struct {
		name   string
		caller callinfo.Caller
		batch  *batchv1.Batch
		want   bool
	}{
		{"own batch", alice, batchOf("alice"), true},
		{"another's batch", alice, batchOf("bob"), false},
		{"made outside the gateway", alice, batchOf(""), false},
		{"all scope, another's", ops, batchOf("bob"), true},
		{"all scope, outside", ops, batchOf(""), true},
		{"unrestricted mode", anon, batchOf("bob"), true},
		{"nameless restricted caller", callinfo.Caller{Scopes: callinfo.DefaultScopes}, batchOf(""), false},
	}
	for _, tt := range tests {
		if got := ownership.CanSee(tt.caller, tt.batch); got != tt.want {
			t.Errorf("%s: CanSee = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	alice := callinfo.Caller{Name: "alice", Scopes: callinfo.DefaultScopes}
	bob := callinfo.Caller{Name: "bob", Scopes: callinfo.DefaultScopes}
	f := ownership.NewFiles(3)
	f.AddBatch(batchOf("alice"))
	f.Add("file_up", "bob")
	for _, tt := range []struct {
		caller callinfo.Caller
		id     string
		want   bool
	}{
		{alice, "file_in", true}, {alice, "file_out", true}, {bob, "file_in", false},
		{bob, "file_up", true}, {alice, "file_up", false}, {alice, "file_unknown", false},
		{callinfo.Caller{Name: "x", Scopes: callinfo.Unrestricted}, "file_unknown", true},
	} {
		if got := f.CanSee(tt.caller, tt.id); got != tt.want {
			t.Errorf("%s on %s: %v, want %v", tt.caller.Name, tt.id, got, tt.want)
		}
	}
	f.Add("file_in", "bob") // the first owner stays
	if !f.CanSee(alice, "file_in") || f.CanSee(bob, "file_in") {
		t.Error("a second owner took a file over")
	}

	// Bounded: the least recently used go first.
	f.Add("file_new", "alice") // evicts the least recent: file_out
	if f.Len() != 3 || f.CanSee(alice, "file_out") {
		t.Errorf("after eviction: len %d, file_out still seen: %v", f.Len(), f.CanSee(alice, "file_out"))
	}
	f.Remove("file_new")
	if f.CanSee(alice, "file_new") || f.Len() != 2 {
		t.Error("Remove did not forget the file")
	}
	big := ownership.NewFiles(0)
	for i := range ownership.DefaultMaxFiles + 10 {
		big.Add(fmt.Sprint("f", i), "alice")
	}
	if big.Len() != ownership.DefaultMaxFiles {
		t.Errorf("default bound: %d files kept", big.Len())
	}
}
