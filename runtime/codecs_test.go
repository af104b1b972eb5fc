package runtime

import (
	"fmt"
	"testing"
)

// TestDefaultCodecs pins the encodings planning measures, which come from
// the codec registry: the set and the order candidates are tabled in.
func TestDefaultCodecs(t *testing.T) {
	cases := []struct {
		lossy bool
		want  string
	}{
		{false, "[raw raw+zstd raw+lz4]"},
		{true, "[raw raw+zstd raw+lz4 fp16 fp16+zstd int8 int8+zstd]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(DefaultCodecs(c.lossy)); got != c.want {
			t.Errorf("DefaultCodecs(%v) = %s, want %s", c.lossy, got, c.want)
		}
	}
}
