package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the tool with args and returns its exit status: 0 when the
// run's invariants held, 1 when one was violated, 2 on a usage or setup
// error.
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: loadgen [flags]\n\n%s\n\nflags:\n", doc)
		fs.PrintDefaults()
	}
	cfg, err := parseFlags(args, fs)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	if cfg.JSON != "" {
		if err := writeJSON(cfg.JSON, rep); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
	}
	if cfg.HTML != "" {
		if err := writeHTML(cfg.HTML, rep); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
	}
	if rep.Invariants.Total() > 0 {
		return 1
	}
	return 0
}

const doc = `Simulates a fleet of stickyroute server pods and client processes with
Zipf-popular users, drives it at a rate (or with a number of workers) and
reports latency percentiles per operation, errors, cache hit ratio, placement
skew and the invariants of sticky routing. With no -redis or -cluster it runs
on an embedded in-process Redis.`

// writeJSON writes rep to path.
func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// isTerminal reports whether w is a terminal, where the progress line
// rewrites itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
