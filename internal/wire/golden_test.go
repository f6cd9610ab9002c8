package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.gateway.json from the current output")

// goldenCases returns the names of the testdata/golden/<name>.upstream.json
// inputs.
func goldenCases(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.upstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Guard against a glob that silently matches nothing (or a lost file).
	if len(paths) < 18 {
		t.Fatalf("found %d golden inputs, want at least 18", len(paths))
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ".upstream.json")
	}
	return names
}

func readGolden(t testing.TB, name, kind string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", name+"."+kind+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGolden decodes what the upstream sends with the real upstream decoder,
// marshals it with MarshalBatch, and compares the bytes with the golden
// gateway output. The golden files are indented for reading; the
// comparison is on their compact form, so key order, escaping and number
// formatting all count.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := DecodeBatch(readGolden(t, name, "upstream"))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			got, err := MarshalBatch(b)
			if err != nil {
				t.Fatalf("MarshalBatch: %v", err)
			}
			wantPath := filepath.Join("testdata", "golden", name+".gateway.json")
			if *update {
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, got, "", "  "); err != nil {
					t.Fatalf("output is not JSON: %v\n%s", err, got)
				}
				pretty.WriteByte('\n')
				if err := os.WriteFile(wantPath, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			var want bytes.Buffer
			if err := json.Compact(&want, readGolden(t, name, "gateway")); err != nil {
				t.Fatalf("golden file is not JSON: %v", err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("MarshalBatch output differs from %s (run go test -update to accept)\n got: %s\nwant: %s", wantPath, got, want.Bytes())
			}
		})
	}
}

// TestGoldenShape checks the package doc's always-present keys and the
// absence of upstream_status on every golden input, independently of the
// golden files.
func TestGoldenShape(t *testing.T) {
	t.Parallel()
	alwaysPresent := []string{"id", "object", "endpoint", "input_file_id", "output_file_id", "error_file_id", "completion_window", "metadata", "errors"}
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := DecodeBatch(readGolden(t, name, "upstream"))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			out, err := MarshalBatch(b)
			if err != nil {
				t.Fatalf("MarshalBatch: %v", err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("output is not a JSON object: %v", err)
			}
			for _, k := range alwaysPresent {
				if _, ok := m[k]; !ok {
					t.Errorf("key %q missing", k)
				}
			}
			if _, ok := m["upstream_status"]; ok {
				t.Error("upstream_status is emitted")
			}
			var st string
			if err := json.Unmarshal(m["status"], &st); err != nil || st != b.GetUpstreamStatus() {
				t.Errorf("status = %s, want the upstream's %q", m["status"], b.GetUpstreamStatus())
			}
			if bytes.HasSuffix(out, []byte("\n")) {
				t.Error("output ends with a newline")
			}
		})
	}
}

// TestGoldenRoundTrip checks that the gateway's output, read back by the
// upstream decoder, is the batch it was made from, and that marshaling is
// stable.
func TestGoldenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b1, err := DecodeBatch(readGolden(t, name, "upstream"))
			if err != nil {
				t.Fatalf("DecodeBatch(upstream): %v", err)
			}
			out1, err := MarshalBatch(b1)
			if err != nil {
				t.Fatalf("MarshalBatch: %v", err)
			}
			b2, err := DecodeBatch(out1)
			if err != nil {
				t.Fatalf("DecodeBatch(gateway output): %v\n%s", err, out1)
			}
			if !proto.Equal(b1, b2) {
				t.Errorf("round trip changed the batch\nbefore: %v\n after: %v", b1, b2)
			}
			out2, err := MarshalBatch(b2)
			if err != nil {
				t.Fatalf("MarshalBatch again: %v", err)
			}
			if !bytes.Equal(out1, out2) {
				t.Errorf("marshaling is not stable\nfirst: %s\nagain: %s", out1, out2)
			}
		})
	}
}
