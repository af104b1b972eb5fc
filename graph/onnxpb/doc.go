// Package onnxpb holds the Go types for the ONNX protobuf messages that tracr
// reads and writes, generated from onnx.proto in this folder.
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto
