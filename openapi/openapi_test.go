package openapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/batchgate/batchgate/openapi"
)

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("loading batchgate.yaml: %v", err)
	}
	return doc
}

// TestDocumentValidates: the document loads and is valid OpenAPI 3.0
// (examples included).
func TestDocumentValidates(t *testing.T) {
	doc := load(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("batchgate.yaml is not valid OpenAPI: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q, want 3.0.3", doc.OpenAPI)
	}
}

// TestEveryRuleIsDescribed: every HTTP rule of proto/gateway.yaml, and the
// paths the HTTP port serves besides them, have an operation.
func TestEveryRuleIsDescribed(t *testing.T) {
	doc := load(t)
	rules, err := os.ReadFile(filepath.Join("..", "proto", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type op struct{ method, path string }
	want := []op{
		{"POST", "/v1/files"}, // the upload handler, not a grpc-gateway rule
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/openapi.yaml"},
	}
	re := regexp.MustCompile(`(?m)^\s*(get|post|delete|put|patch):\s*(/\S+)\s*$`)
	for _, m := range re.FindAllStringSubmatch(string(rules), -1) {
		want = append(want, op{strings.ToUpper(m[1]), m[2]})
	}
	if len(want) < 15 {
		t.Fatalf("found %d operations in proto/gateway.yaml and the list, want at least 15", len(want))
	}
	for _, o := range want {
		item := doc.Paths.Value(o.path)
		if item == nil || item.GetOperation(o.method) == nil {
			t.Errorf("%s %s is not described", o.method, o.path)
		}
	}
	if n := len(doc.Paths.Map()); n != 13 {
		t.Errorf("%d paths described, want the 13 the port serves", n)
	}
}

// TestGoldenFilesConform: the canonical JSON of internal/wire's golden
// files (every status, nulls, huge integers, unknown fields and statuses,
// lists, files) conforms to the document's schemas.
func TestGoldenFilesConform(t *testing.T) {
	doc := load(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "internal", "wire", "testdata", "golden")
	schemaOf := func(name string) string {
		switch {
		case strings.HasPrefix(name, "batch_list"):
			return "BatchList"
		case strings.HasPrefix(name, "file_list"):
			return "FileList"
		case strings.HasPrefix(name, "file"):
			return "File"
		case name == "deleted":
			return "FileDeleted"
		default:
			return "Batch"
		}
	}
	var paths []string
	for _, glob := range []string{"*.gateway.json", "lifecycle/*.gateway.json"} {
		m, err := filepath.Glob(filepath.Join(dir, glob))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) < 27 {
		t.Fatalf("found %d golden files, want at least 27", len(paths))
	}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".gateway.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			s := doc.Components.Schemas[schemaOf(name)].Value
			if err := s.VisitJSON(v, openapi3.VisitAsResponse()); err != nil {
				t.Errorf("%s does not conform to %s: %v", p, schemaOf(name), err)
			}
		})
	}
}

// TestSchemasRejectTheProtoShape: the protojson shape (int64 as strings,
// enum names, wrapped) is not what the document describes.
func TestSchemasRejectTheProtoShape(t *testing.T) {
	doc := load(t)
	batch := doc.Components.Schemas["Batch"].Value
	for name, body := range map[string]string{
		"int64 as a string": `{"id":"b","object":"batch","endpoint":"/v1/chat/completions","status":"completed","input_file_id":"f",
			"output_file_id":null,"error_file_id":null,"completion_window":"24h","created_at":"1710000000","metadata":null,"errors":null}`,
		"missing nulls": `{"id":"b","object":"batch","endpoint":"/v1/chat/completions","status":"completed","input_file_id":"f","completion_window":"24h"}`,
		"wrapped":       `{"batch":{"id":"b"}}`,
		"metadata pairs": `{"id":"b","object":"batch","endpoint":"/v1/chat/completions","status":"completed","input_file_id":"f",
			"output_file_id":null,"error_file_id":null,"completion_window":"24h","metadata":{"pairs":{"a":"b"}},"errors":null}`,
	} {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if err := batch.VisitJSON(v, openapi3.VisitAsResponse()); err == nil {
			t.Errorf("%s: accepted as a Batch", name)
		}
	}
	env := doc.Components.Schemas["ErrorEnvelope"].Value
	var rpc any
	_ = json.Unmarshal([]byte(`{"code":5,"message":"not found","details":[]}`), &rpc)
	if err := env.VisitJSON(rpc, openapi3.VisitAsResponse()); err == nil {
		t.Error("an rpcStatus is accepted as the error envelope")
	}
}
