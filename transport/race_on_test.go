//go:build race

package transport

// raceDetector is set when the tests run under the race detector, which
// slows the code down too much for sub-millisecond timing checks.
const raceDetector = true
