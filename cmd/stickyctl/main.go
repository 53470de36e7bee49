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
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// Exit statuses.
const (
	exitOK       = 0
	exitNotFound = 1
	exitError    = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one verb of the tool.
type command struct {
	name, usage, summary string
	// nargs is the number of positional arguments (after the flags).
	nargs int
	// flags defines the command's own flags on fs; check, if set, vets them
	// before anything connects; run does the work with the positional
	// arguments.
	flags func(fs *flag.FlagSet, o *opts)
	check func(o *opts) error
	run   func(ctx context.Context, e *env, args []string) error
}

// commands are the tool's verbs, in the order of its help.
var commands = []command{
	{name: "pods", usage: "-ns N -svc S",
		summary: "the pods of a service: routing state, load, age of the last publish, alive/routable/accepting; the service's workload state",
		flags:   serviceFlags,
		run:     runPods,
	},
	{name: "user", nargs: 1, usage: "-ns N [-svc S] UID",
		summary: "every link of a user, persistent or temporary, with its time to live and whether its pod is routable " +
			"(without -svc: its links to the namespace's services that have pods, and its persistent links)",
		flags: serviceFlags,
		run:   runUser,
	},
	{name: "move", nargs: 2, usage: "-ns N -svc S [-force] UID POD",
		summary: "link a user to another pod, compare-and-set from the pod it is on now (never a blind overwrite); the link keeps its kind and time to live",
		flags: func(fs *flag.FlagSet, o *opts) {
			serviceFlags(fs, o)
			fs.BoolVar(&o.force, "force", false, "move even to a pod that is not accepting new users")
		},
		run: runMove,
	},
	{name: "drain", nargs: 1, usage: "-ns N -svc S [-shutdown] POD",
		summary: "ask a pod to take no new users (DenyNewCall; -shutdown: nobody), through the operator request its server applies on its next heartbeat",
		flags: func(fs *flag.FlagSet, o *opts) {
			serviceFlags(fs, o)
			fs.BoolVar(&o.shutdown, "shutdown", false, "request Shutdown: the pod takes nobody, its users are placed elsewhere")
		},
		run: runDrain,
	},
	{name: "undrain", nargs: 1, usage: "-ns N -svc S POD",
		summary: "withdraw the request drain made: the pod publishes its own state again on its next heartbeat",
		flags:   serviceFlags,
		run:     runUndrain,
	},
	{name: "watch", usage: "-ns N -svc S [-every D] [-events N]",
		summary: "a line per change of a service's pods: pods joining, leaving (dead or gone), changing state, load jumps; first the pods as they are",
		flags: func(fs *flag.FlagSet, o *opts) {
			serviceFlags(fs, o)
			fs.DurationVar(&o.every, "every", time.Second, "how often to read the pods")
			fs.IntVar(&o.events, "events", 0, "stop after this many lines (0: until interrupted)")
		},
		run: runWatch,
	},
	{name: "serve", usage: "-ns N -svc S[,S...] [-listen ADDR] [-token T]",
		summary: "a live console: the pods of the services with state, load and a load chart, drain/undrain buttons, a user lookup (loopback only unless -token)",
		flags: func(fs *flag.FlagSet, o *opts) {
			serviceFlags(fs, o)
			fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve on; any but a loopback one requires -token")
			fs.StringVar(&o.token, "token", "", "secret every request must carry (header Authorization: Bearer T, or ?token=T to open the page)")
			fs.DurationVar(&o.every, "every", time.Second, "how often the console reads the pods (the chart's resolution)")
			fs.DurationVar(&o.history, "history", 5*time.Minute, "how far back the load chart goes")
		},
		check: checkServe,
		run:   runServe,
	},
}

// realMain runs the tool with args and returns its exit status.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitError
		}
		return exitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "stickyctl: unknown command %q\n", args[0])
		usage(stderr)
		return exitError
	}
	fs := flag.NewFlagSet("stickyctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: stickyctl %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	o := &opts{}
	o.define(fs)
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	var err error
	if n := len(fs.Args()); n != cmd.nargs {
		err = fmt.Errorf("%s takes %d arguments after its flags, got %d %q: stickyctl %s %s", cmd.name, cmd.nargs, n, fs.Args(), cmd.name, cmd.usage)
	}
	if err == nil && cmd.check != nil {
		err = cmd.check(o)
	}
	var e *env
	if err == nil {
		e, err = o.open(stdout)
	}
	if err == nil {
		defer e.close()
		err = cmd.run(ctx, e, fs.Args())
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errNotFound):
		fmt.Fprintln(stderr, "stickyctl:", err)
		return exitNotFound
	default:
		fmt.Fprintln(stderr, "stickyctl:", err)
		return exitError
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: stickyctl <command> [flags] [arguments]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.usage, c.summary)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nEvery command takes -redis ADDR, -cluster ADDRS or -embedded, and -o table|json; stickyctl <command> -h lists its flags.")
}

// errNotFound is matched by the errors of a lookup that found nothing
// (exit status 1).
var errNotFound = errors.New("not found")

// notFound returns an error matching errNotFound, with a message of its own.
func notFound(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errNotFound)
}

// opts are the flags every command shares.
type opts struct {
	redis, cluster, output string
	embedded               bool
	ns, svc                string
	staleness              time.Duration
	force, shutdown        bool
	listen, token          string
	history                time.Duration
	every                  time.Duration
	events                 int
}

func (o *opts) define(fs *flag.FlagSet) {
	fs.StringVar(&o.redis, "redis", "", "host:port of a standalone Redis")
	fs.StringVar(&o.cluster, "cluster", "", "comma-separated host:port of Redis Cluster nodes")
	fs.BoolVar(&o.embedded, "embedded", false, "an in-process Redis of this run's own (to try the tool)")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	fs.StringVar(&o.ns, "ns", "", "namespace")
}

// serviceFlags defines -svc (required when need) and -staleness, for the
// commands that read a service's pods.
func serviceFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.svc, "svc", "", "service")
	fs.DurationVar(&o.staleness, "staleness", 3*time.Second, "age of a pod's last publish after which it is dead (the fleet's Timing.Staleness)")
}

// env is what a command works with: the store and the output.
type env struct {
	st     *store.Redis
	out    io.Writer
	json   bool
	o      *opts
	closer func()
}

// open checks the shared flags and connects to the Redis they name.
func (o *opts) open(out io.Writer) (*env, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", o.output)
	}
	if err := store.ValidateName("namespace (-ns)", o.ns); err != nil {
		return nil, err
	}
	n := 0
	for _, set := range []bool{o.redis != "", o.cluster != "", o.embedded} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("give exactly one of -redis ADDR, -cluster ADDRS and -embedded")
	}
	e := &env{out: out, json: o.output == "json", o: o}
	if o.embedded {
		st, err := embedded.Dial(store.DialConfig{ClientName: "stickyctl"})
		if err != nil {
			return nil, err
		}
		e.st, e.closer = st, st.Close
		return e, nil
	}
	addrs := []string{o.redis}
	if o.cluster != "" {
		addrs = strings.Split(o.cluster, ",")
	}
	// An operator's reads need no client-side cache (no tracking).
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, ClientName: "stickyctl", DisableCache: true})
	if err != nil {
		return nil, fmt.Errorf("connecting to Redis at %s: %w", strings.Join(addrs, ","), err)
	}
	e.st, e.closer = store.New(c), c.Close
	return e, nil
}

func (e *env) close() { e.closer() }

// uidArg checks a UID argument.
func uidArg(uid string) (string, error) { return uid, store.ValidateUID("UID", uid) }

// podArgNum reads a POD argument.
func podArgNum(s string) (int, error) {
	pod, err := strconv.Atoi(s)
	if err != nil || pod < 0 || pod > store.MaxPod {
		return 0, fmt.Errorf("POD %q: want a pod index, 0 to %d", s, store.MaxPod)
	}
	return pod, nil
}

// service checks -svc, which the command needs.
func (e *env) service() (string, error) {
	if e.o.svc == "" {
		return "", errors.New("-svc: give the service")
	}
	return e.o.svc, store.ValidateName("service (-svc)", e.o.svc)
}

// emit writes v as JSON, or calls table with a tab writer.
func (e *env) emit(v any, table func(p func(format string, a ...any))) error {
	if e.json {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	table(func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) })
	return tw.Flush()
}
