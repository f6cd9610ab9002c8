# syntax=docker/dockerfile:1
#
# batchgate: the gateway and the upstream simulator, static binaries on
# distroless (CA certificates, /etc/passwd, no shell, no package manager).
#   docker build -t batchgate .
#   docker run --rm -p 8080:8080 -p 9090:9090 batchgate -demo -grpc-addr :9090 -http-addr :8080 -auth none
#   docker run --rm --entrypoint /usr/local/bin/simulator batchgate -addr :8081 -any-key
# No HEALTHCHECK: orchestrators probe /healthz and /readyz (see deploy/kubernetes).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/gateway ./cmd/gateway && \
    go build -trimpath -ldflags='-s -w' -o /out/simulator ./cmd/simulator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/simulator /usr/local/bin/
# distroless's "nonroot", numerically, so that runAsNonRoot can check it.
USER 65532:65532
# 8080 HTTP/JSON, 9090 gRPC, 8082 the webhook receiver (when on), 8081 the simulator.
EXPOSE 8080 9090 8082 8081
ENTRYPOINT ["/usr/local/bin/gateway"]
