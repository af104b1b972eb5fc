# tracr build targets. `make run` and `make test` are the two entry points;
# both fetch ONNX Runtime first (make setup, a no-op once it is cached).

GO ?= go
export CGO_ENABLED := 1
# go-nvml's C headers use deprecated declarations; its first compile would
# print pages of warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: setup build test run bench lint fuzz

# setup fetches and verifies the ONNX Runtime shared library (outside the repo).
setup:
	bash scripts/setup-ort.sh

build:
	$(GO) build -o bin/tracr ./cmd/tracr

test: setup
	$(GO) test -count=1 -timeout 14m ./...

# run is the main job on the built-in defaults: the embedded loopback server
# (real SSH, in this process), the built-in YOLOv8n, the sample images in
# data/samples. It plans (profiles both sides, probes the link), runs the
# plan with requests in flight, and writes results/yolov8/run.csv (one row
# per request), run.json (versions, machine, config, plan table) and
# overlays/.
run: setup build
	./bin/tracr run --config config/yolov8.toml

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l is not empty:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# fuzz runs each transport fuzz target for 20s (the corpus it grows stays in
# the Go build cache; checked-in seeds are in transport/testdata/fuzz).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime 20s ./transport/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInfer$$' -fuzztime 20s ./transport/
