// Package openapi holds batchgate.yaml, the OpenAPI 3.0 description of what
// the gateway's REST port sends and accepts (the wire, not the proto
// messages that gen/openapiv2 describes). The gateway serves it at
// GET /openapi.yaml; the end-to-end tests validate every response against
// it (internal/gatewaytest).
package openapi

import _ "embed" // for go:embed

//go:embed batchgate.yaml
var document []byte

// Document returns the YAML document. The slice is shared: do not modify
// it.
func Document() []byte { return document }
