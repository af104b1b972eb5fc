package graph_test

import (
	"testing"

	"tracr/internal/orttest"
)

// TestMain gives the tests a cache folder of their own (see orttest.Main).
func TestMain(m *testing.M) { orttest.Main(m) }
