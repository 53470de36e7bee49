// Package repocheck holds no code, only the tests of the repository's own
// checks: scripts/checkfiles.sh, which make lint runs to keep build outputs
// (large files, compiled programs, executables that are not scripts) out of
// git.
package repocheck
