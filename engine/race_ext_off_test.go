//go:build !race

package engine_test

// raceDetector is true under -race, which allocates on its own.
const raceDetector = false
