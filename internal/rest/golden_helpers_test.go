package rest

import (
	"os"
	"path/filepath"
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// readGolden returns the hand-written golden file
// internal/wire/testdata/golden/<name>.<kind>.json (kind "upstream" for
// what the upstream sends, "gateway" for what the gateway writes).
func readGolden(t testing.TB, name, kind string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "wire", "testdata", "golden", name+"."+kind+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decodeGolden decodes the golden upstream input <name>.
func decodeGolden(t testing.TB, name string) *batchv1.Batch {
	t.Helper()
	b, err := wire.DecodeBatch(readGolden(t, name, "upstream"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
