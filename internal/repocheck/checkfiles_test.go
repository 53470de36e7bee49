package repocheck

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// script is scripts/checkfiles.sh of this checkout.
func script(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "scripts", "checkfiles.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs name with args in dir and returns its combined output and error.
func run(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// repo makes a git repository in a temporary directory holding a small Go
// file and a script, both tracked, and returns its path.
func repo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed to test scripts/checkfiles.sh")
	}
	dir := t.TempDir()
	write(t, dir, "main.go", []byte("package main\n\nfunc main() {}\n"), 0o644)
	write(t, dir, "run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	if out, err := run(t, dir, "git", "init", "-q"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	add(t, dir)
	return dir
}

func write(t *testing.T, dir, name string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
		t.Fatal(err)
	}
}

func add(t *testing.T, dir string) {
	t.Helper()
	if out, err := run(t, dir, "git", "add", "-A"); err != nil {
		t.Fatalf("git add: %v\n%s", err, out)
	}
}

// check runs the script on dir and returns its output and whether it passed.
func check(t *testing.T, dir string) (string, bool) {
	t.Helper()
	out, err := run(t, dir, script(t), dir)
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("checkfiles.sh did not run: %v\n%s", err, out)
		}
	}
	return out, err == nil
}

// TestCheckFiles: a clean repository passes; each kind of build output,
// once tracked, fails the check with a message naming the file.
func TestCheckFiles(t *testing.T) {
	if out, ok := check(t, repo(t)); !ok {
		t.Fatalf("a clean repository failed the check:\n%s", out)
	}
	elf := append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}, bytes.Repeat([]byte{0}, 100)...)
	for _, c := range []struct {
		name string
		data []byte
		mode os.FileMode
		want string
	}{
		{"big.bin", bytes.Repeat([]byte("x"), 2<<20), 0o644, "big.bin is 2097152 bytes, over 1048576"},
		{"loadgen", elf, 0o755, "loadgen is a compiled program"},
		{"loadgen.dat", elf, 0o644, "loadgen.dat is a compiled program"},
		{"tool", []byte("not a script\n"), 0o755, "tool is executable but not a script"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := repo(t)
			write(t, dir, c.name, c.data, c.mode)
			if out, ok := check(t, dir); !ok {
				t.Fatalf("an untracked %s failed the check (only tracked files count):\n%s", c.name, out)
			}
			add(t, dir)
			out, ok := check(t, dir)
			if ok || !strings.Contains(out, c.want) {
				t.Fatalf("tracked %s: passed=%v, output %q, want a failure saying %q", c.name, ok, out, c.want)
			}
		})
	}
}
