# tracr build targets. `make run` and `make test` are the two entry points;
# both fetch ONNX Runtime first (make setup, a no-op once it is cached).

GO ?= go
export CGO_ENABLED := 1

.PHONY: setup build test run bench lint

# setup fetches and verifies the ONNX Runtime shared library (outside the repo).
setup:
	bash scripts/setup-ort.sh

build:
	$(GO) build -o bin/tracr ./cmd/tracr

test: setup
	$(GO) test -count=1 -timeout 14m ./...

run: setup build
	./bin/tracr version

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l is not empty:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
