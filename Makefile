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

# run is the main job on the built-in defaults. Until the runtime lands it
# shows what exists end to end: the zoo, the cut table of the built-in
# YOLOv8n (written to out/yolov8n-cuts.txt) and a verified split at a neck
# cut where skip tensors cross.
run: setup build
	./bin/tracr version
	./bin/tracr models
	mkdir -p out
	./bin/tracr cuts --model yolov8n > out/yolov8n-cuts.txt
	@echo "cut table: out/yolov8n-cuts.txt"
	./bin/tracr split --model yolov8n --cut 160 -o out/yolov8n-cut160 --verify

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
