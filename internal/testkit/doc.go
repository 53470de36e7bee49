// Package testkit holds the small pieces that the tests, fuzz targets and
// benchmarks of several packages share: a fuzz program read byte by byte, the
// benchmarks' uid strings, a run of calls spread over goroutines, and workers
// that call until told to stop. It is internal and imported only by test
// files.
package testkit
