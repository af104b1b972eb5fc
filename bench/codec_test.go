package bench

import (
	"fmt"
	"testing"
)

// TestCodecLists pins the encodings the codec figures compare, which come
// from the codec registry: the same set, in the same order, as the figures
// have always been reported in.
func TestCodecLists(t *testing.T) {
	if got, want := fmt.Sprint(comparedCodecs()), "[raw+zstd raw+lz4 fp16 fp16+zstd int8 int8+zstd]"; got != want {
		t.Errorf("compared codecs %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(lossyCodecs()), "[fp16 int8]"; got != want {
		t.Errorf("lossy codecs %s, want %s", got, want)
	}
}
