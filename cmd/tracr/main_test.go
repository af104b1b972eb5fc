package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"tracr/engine"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		ortLib     string // TRACR_ORT_LIB; "" keeps the environment's
		needsORT   bool
		wantStatus int
		wantOut    string // prefix of stdout
		wantErr    string // all of stderr
	}{
		{name: "version", args: []string{"version"}, needsORT: true, wantOut: "tracr "},
		{name: "version without runtime", args: []string{"version"}, ortLib: "/nowhere/libonnxruntime.so.1", wantStatus: 1, wantOut: "tracr ",
			wantErr: "tracr: ONNX Runtime library not found at /nowhere/libonnxruntime.so.1 (from TRACR_ORT_LIB); fix TRACR_ORT_LIB, or unset it and run make setup\n"},
		{name: "unknown command", args: []string{"nope"}, wantStatus: 1, wantErr: "tracr: unknown command \"nope\"; see tracr --help\n"},
		{name: "unknown flag", args: []string{"--nope"}, wantStatus: 1, wantErr: "tracr: flag provided but not defined: -nope (see tracr --help)\n"},
		{name: "unknown command flag", args: []string{"version", "--nope"}, wantStatus: 1,
			wantErr: "tracr: version: flag provided but not defined: -nope (see tracr version --help)\n"},
		{name: "help", args: []string{"--help"}, wantOut: "NAME:\n   tracr - "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ortLib != "" {
				t.Setenv("TRACR_ORT_LIB", tt.ortLib)
			}
			if _, err := engine.LibraryPath(); tt.needsORT && err != nil {
				if os.Getenv("TRACR_REQUIRE_ORT") != "" {
					t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
				}
				t.Skip(err.Error())
			}
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"tracr"}, tt.args...), &stdout, &stderr)
			if status != tt.wantStatus || !strings.HasPrefix(stdout.String(), tt.wantOut) || stderr.String() != tt.wantErr {
				t.Fatalf("run(%q) = %d\nstdout %q (want prefix %q)\nstderr %q (want %q)", tt.args, status, stdout.String(), tt.wantOut, stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestVersionOutput(t *testing.T) {
	path, err := engine.LibraryPath()
	if err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	var stdout, stderr bytes.Buffer
	if status := run([]string{"tracr", "version"}, &stdout, &stderr); status != 0 {
		t.Fatalf("tracr version: status %d, stderr %q", status, stderr.String())
	}
	want := "tracr " + tracrVersion() + "\nONNX Runtime " + engine.ORTVersion + " (" + path + ")\n"
	if stdout.String() != want {
		t.Errorf("tracr version printed %q, want %q", stdout.String(), want)
	}
}
