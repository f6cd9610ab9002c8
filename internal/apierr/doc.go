// Package apierr is the gateway's error funnel. It holds the two tables that
// say what a failure looks like to callers:
//
//   - FromError turns any error from the upstream client or the service into
//     a gRPC status with details a client can act on (grpc.go);
//   - HTTPStatus and WriteHTTP turn such a status back into an HTTP status and
//     the upstream's own error envelope for REST callers (http.go).
//
// Nothing else in the gateway maps codes.
package apierr
