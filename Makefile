# tracr build targets. `make run` and `make test` are the two entry points;
# both fetch ONNX Runtime first (make setup, a no-op once it is cached).

GO ?= go
export CGO_ENABLED := 1
# go-nvml's C headers use deprecated declarations; its first compile would
# print pages of warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: setup build build-arm64 test test-race test-arm64 dist run bench bench-quick bench-go soak lint fuzz

# setup fetches and verifies the ONNX Runtime shared library (outside the repo).
setup:
	bash scripts/setup-ort.sh

build:
	$(GO) build -o bin/tracr ./cmd/tracr

# build-arm64 cross-compiles tracr for linux/arm64 (a Raspberry Pi 4/5, a
# Jetson) with cgo, into bin/linux-arm64/tracr. It needs Debian's
# gcc-aarch64-linux-gnu and libc6-dev-arm64-cross; ONNX Runtime is loaded
# at run time, so building needs no library (make dist packs it).
ARM64_CC ?= aarch64-linux-gnu-gcc
build-arm64:
	@command -v $(ARM64_CC) >/dev/null || { echo "build-arm64: $(ARM64_CC) not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2; exit 1; }
	GOOS=linux GOARCH=arm64 CC=$(ARM64_CC) $(GO) build -o bin/linux-arm64/tracr ./cmd/tracr

# dist writes dist/tracr-<version>-linux-amd64.tar.gz and ...-arm64.tar.gz:
# the binary, the matching ONNX Runtime library beside it, the example
# configs and sample images, and INSTALL (scripts/dist.sh).
dist: build build-arm64
	bash scripts/dist.sh amd64 bin/tracr
	bash scripts/dist.sh arm64 bin/linux-arm64/tracr

# test-arm64 runs the arm64 tracr under qemu-aarch64-static against this
# machine's native server (cmd/tracr TestArm64Edge): version, the wrong
# library refused, split --verify, and the edge of a run. It needs
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user-static; CI
# installs them (.ci/run).
test-arm64: setup
	bash scripts/setup-ort.sh arm64
	@command -v qemu-aarch64-static >/dev/null || { echo "test-arm64: qemu-aarch64-static not found: apt-get install qemu-user-static" >&2; exit 1; }
	@command -v $(ARM64_CC) >/dev/null || { echo "test-arm64: $(ARM64_CC) not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2; exit 1; }
	TRACR_ARM64_LIB=$$(bash scripts/setup-ort.sh --print-path arm64) $(GO) test -count=1 -timeout 20m -run '^TestArm64Edge$$' -v ./cmd/tracr/

test: setup
	$(GO) test -count=1 -timeout 14m ./...

# test-race runs the packages with goroutines of their own (the link
# emulation and SSH transport, the pipelined runtime with its adaptive,
# rescue and fallback paths, the probe, the re-planner) under the race
# detector: 45 s on 2 cores with a warm build cache, about 2 minutes cold
# (the packages' tests: transport 21 s, runtime 40 s, netprobe 9 s,
# planner 1 s). The runtime tests whose plan choice depends on timing skip
# themselves under the detector (raceDetector).
RACE_PKGS ?= ./transport/ ./runtime/ ./netprobe/ ./planner/
test-race: setup
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

# run is the main job on the built-in defaults: the embedded loopback server
# (real SSH, in this process), the built-in YOLOv8n, the sample images in
# data/samples. It plans (profiles both sides, probes the link), runs the
# plan with requests in flight, and writes results/yolov8/run.csv (one row
# per request), run.json (versions, machine, config, plan table) and
# overlays/.
run: setup build
	./bin/tracr run --config config/yolov8.toml

# bench measures the headline figures side by side in one run (regret and
# prediction error per model x link, runtime overhead, pipelined
# throughput, adaptation on config/trace-50-2.csv, SSH vs TCP, codecs) and
# writes results/bench/bench.{csv,json,md}; then the Go benchmarks.
# bench-quick is the same table with smaller inputs (a few minutes).
bench: setup build
	./bin/tracr bench --out results/bench
	$(MAKE) bench-go

bench-quick: setup build
	./bin/tracr bench --quick --out results/bench

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# soak runs 8 edge clients for 60 s against one loopback server, with the
# link slowed 100x for 10 s a third of the way in: zero errors, peak RSS
# and per-client latency.
soak: setup build
	./bin/tracr bench --soak 60s --clients 8 --slow 10s

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l is not empty:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# fuzz runs each transport fuzz target for 300000 inputs (10-20 s here; the
# corpus it grows stays in the Go build cache; checked-in seeds are in
# transport/testdata/fuzz). A count, not a duration: with -fuzztime 20s, Go
# 1.26's fuzz coordinator can report its own deadline as a failure when a
# loaded machine starves a worker at the boundary (golang/go#75804, fixed in
# Go 1.27). -timeout still bounds the run.
FUZZ_INPUTS ?= 300000
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZ_INPUTS)x -timeout 5m ./transport/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInfer$$' -fuzztime $(FUZZ_INPUTS)x -timeout 5m ./transport/
