// Package testkit holds the small pieces that the tests, fuzz targets and
// benchmarks of several packages share: a fuzz program read byte by byte, the
// benchmarks' uid strings, and a run of calls spread over goroutines. It is
// internal and imported only by test files.
package testkit
