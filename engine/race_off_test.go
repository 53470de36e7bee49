//go:build !race

package engine

// raceEnabled reports whether the tests run under the race detector, which
// allocates on its own.
const raceEnabled = false
