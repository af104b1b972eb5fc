//go:build !race

package runtime

// raceDetector is set when the tests run under the race detector, which
// slows the code down too much for timing-based checks.
const raceDetector = false
