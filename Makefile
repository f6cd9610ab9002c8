# batchgate developer targets. CI runs .ci/run, which uses these.
BUF := go tool -modfile=tools/buf.mod buf
GOLANGCI := go tool -modfile=tools/golangci.mod golangci-lint
GOTEST_FLAGS ?= -race -count=1

.PHONY: all generate checkgenerate lint test bench breaking loadget loadwatch

all: lint test

## generate: regenerate gen/ from proto/ with buf and the Go-tool plugins.
generate:
	$(BUF) generate

## checkgenerate: fail when gen/ differs from a fresh buf generate.
checkgenerate: generate
	@test -z "$$(git status --porcelain -- gen)" || { echo "gen/ is stale: run 'make generate' and commit"; git status --porcelain -- gen; git diff --stat -- gen; exit 1; }

## lint: gofmt, go vet, golangci-lint (.golangci.yml), buf lint and buf format.
lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))"; test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	go vet ./...
	$(GOLANGCI) run ./...
	$(BUF) lint
	$(BUF) format -d --exit-code

## breaking: buf breaking against the previous commit on main (skipped on the first).
breaking:
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then $(BUF) breaking --against '.git#ref=HEAD~1'; else echo "breaking: no previous commit"; fi

## test: the README's test command.
test:
	go test $(GOTEST_FLAGS) ./...

## bench: the README's benchmark command.
bench:
	go test -run='^$$' -bench=. -benchmem -count=8 ./internal/bench/ | tee bench.txt
	go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bench.txt

## loadget: the README's GetBatch-against-its-floor measurement (about 30 s; the simulator, two gateways and the canned hops each run as a separate process).
loadget:
	go run ./cmd/loadget -rounds 5000 -warmup 500

## loadwatch: the README's WatchBatch fan-out measurement (about 90 s; builds and runs the gateway as a separate process).
loadwatch:
	go run ./cmd/loadwatch -watchers 10000 -conns 100 -batches 100 -sse 1000 -interval 1s -duration 20s
