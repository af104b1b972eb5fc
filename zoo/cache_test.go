package zoo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
)

// TestSeal checks that a sealed model is still a valid ModelProto carrying
// its checksum, and that any damage is detected.
func TestSeal(t *testing.T) {
	data, _ := cachedBuild(t, "yolov8n", 64)
	if err := checkSeal(data); err != nil {
		t.Fatalf("checkSeal(Build) = %v", err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	props := m.GetMetadataProps()
	if last := props[len(props)-1]; last.GetKey() != sealKey || len(last.GetValue()) != 8 {
		t.Fatalf("last metadata entry %s=%q; want the checksum", last.GetKey(), last.GetValue())
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"flipped bit", flipped, "checksum mismatch"},
		{"truncated", data[:len(data)-1000], "no zoo checksum"},
		{"trailer only", data[len(data)-len(sealTrailer(0)):], "checksum mismatch"},
		{"empty", nil, "too short"},
		{"other model", data[:len(data)-len(sealTrailer(0))], "no zoo checksum"},
	}
	for _, tt := range tests {
		if err := checkSeal(tt.data); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: checkSeal() = %v; want %q", tt.name, err, tt.want)
		}
	}
}

// TestCacheLoad checks that the cache builds and stores a missing model,
// serves a stored one without building it, and rebuilds a damaged one.
func TestCacheLoad(t *testing.T) {
	ctx := context.Background()
	c := Cache{Dir: filepath.Join(t.TempDir(), "zoo")}
	want, _ := cachedBuild(t, "yolov8n", 64)
	path, err := c.Path("YOLOv8", 64)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "yolov8n-64-v1.onnx" {
		t.Fatalf("Path() = %s; want <dir>/yolov8n-64-v1.onnx", path)
	}

	got, err := c.Load(ctx, "yolov8", 64)
	if err != nil || string(got) != string(want) {
		t.Fatalf("Load(missing) = %d bytes, %v; want the built model", len(got), err)
	}
	if stored, err := os.ReadFile(path); err != nil || string(stored) != string(want) {
		t.Fatalf("cache file: %d bytes, %v; want the built model", len(stored), err)
	}
	if entries, _ := os.ReadDir(c.Dir); len(entries) != 1 {
		t.Fatalf("cache dir holds %d entries; want just the model (no temporary files)", len(entries))
	}

	// A valid sealed file is served as it is: proof that it was read, not
	// rebuilt.
	other, _ := cachedBuild(t, "resnet18", 64)
	if err := os.WriteFile(path, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Load(ctx, "yolov8n", 64); err != nil || string(got) != string(other) {
		t.Fatalf("Load(valid entry) did not return the stored file (%d bytes, %v)", len(got), err)
	}

	for name, damage := range map[string][]byte{
		"truncated": want[:len(want)/2],
		"empty":     nil,
		"flipped":   append(append([]byte(nil), want[:100]...), append([]byte{want[100] ^ 0x80}, want[101:]...)...),
	} {
		if err := os.WriteFile(path, damage, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := c.Load(ctx, "yolov8n", 64)
		if err != nil || string(got) != string(want) {
			t.Fatalf("%s entry: Load() = %d bytes, %v; want the rebuilt model", name, len(got), err)
		}
		if stored, _ := os.ReadFile(path); string(stored) != string(want) {
			t.Fatalf("%s entry was not replaced", name)
		}
	}
}

func TestCacheLoadErrors(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Cache{Dir: file}).Load(ctx, "yolov8n", 64); err == nil || !strings.Contains(err.Error(), "zoo cache") {
		t.Errorf("Load(cache dir is a file) error = %v; want a zoo cache error", err)
	}
	if _, err := (Cache{Dir: t.TempDir()}).Load(ctx, "yolov9", 0); err == nil || !strings.Contains(err.Error(), "unknown zoo model") {
		t.Errorf("Load(unknown) error = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (Cache{Dir: t.TempDir()}).Load(cancelled, "yolov8n", 64); !errors.Is(err, context.Canceled) {
		t.Errorf("Load(cancelled) error = %v; want context.Canceled", err)
	}
}

// TestResolve resolves zoo names and files through a cache in a temporary
// directory.
func TestResolve(t *testing.T) {
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	ctx := context.Background()
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.onnx")
	if err := os.WriteFile(plain, []byte("not really onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "model")
	if err := os.WriteFile(bare, []byte("bare"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.onnx")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	zooModel, _ := cachedBuild(t, "yolov8n", 64)
	cached := filepath.Join(cacheHome, "tracr", "zoo", "yolov8n-64-v1.onnx")
	t.Chdir(dir)

	tests := []struct {
		in        string
		size      int
		source    string
		synthetic bool
		want      []byte
		wantErr   string
	}{
		{in: "YOLOv8", size: 64, source: "zoo:yolov8n@64", synthetic: true, want: zooModel},
		{in: cached, source: cached, synthetic: true, want: zooModel},
		{in: plain, source: plain, want: []byte("not really onnx")},
		{in: "plain.onnx", source: plain, want: []byte("not really onnx")},
		{in: "model", source: bare, want: []byte("bare")},
		{in: "yolov8n", size: 100, wantErr: "not a multiple of 32"},
		{in: "missing.onnx", wantErr: "load model missing.onnx"},
		{in: "empty.onnx", wantErr: "file is empty"},
		{in: "resnet", wantErr: `unknown model "resnet": not a zoo model (alexnet, mobilenetv2, resnet18, yolov8 (= yolov8n), yolov8n, yolov8s) and no such file`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, source, synthetic, err := ResolveSize(ctx, tt.in, tt.size)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveSize() error = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.want) || source != tt.source || synthetic != tt.synthetic {
				t.Fatalf("ResolveSize() = %d bytes, %q, %v; want %d bytes, %q, %v", len(got), source, synthetic, len(tt.want), tt.source, tt.synthetic)
			}
		})
	}
}

// TestResolveWithoutCache builds in memory when the cache cannot be written,
// and says so.
func TestResolveWithoutCache(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", file) // a file, so <it>/tracr/zoo cannot be made
	want, _ := cachedBuild(t, "yolov8n", 64)
	got, source, synthetic, err := ResolveSize(context.Background(), "yolov8n", 64)
	if err != nil || string(got) != string(want) || !synthetic || !strings.HasPrefix(source, "zoo:yolov8n@64 (not cached: zoo cache: mkdir ") {
		t.Fatalf("ResolveSize() = %d bytes, %q, %v, %v", len(got), source, synthetic, err)
	}
}
