package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/handles"
)

// command is one `handoff` subcommand.
type command struct {
	name, args, help string
	run              func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what every command gets: output streams and the daemon's socket.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	socket         string
}

func (e *cliEnv) client() *Client { return NewClient(e.socket) }

var commands []command

func init() {
	commands = []command{
		{"daemon", "[--state-dir DIR] [--listen ADDR] [--name N] [--no-mdns] [--log-level L]", "run the daemon (root)", runDaemon},
		{"tray", "[--devices] [--hotkey KEYS] [--no-hotkey]", "the desktop tray: menu, Devices window, viewer windows (as the desktop user)", runTray},
		{"run", "[--name N] [--size WxH] [--memory BYTES] [--as USER] -- CMD [ARG…]", "start an app in its own container, as you (root: --as USER, or --as root)", runRun},
		{"ls", "[--json]", "list apps", runLs},
		{"handles", "NAME [--json]", "show the handles an app holds and whether each can move", runHandles},
		{"screenshot", "NAME OUT.png", "save the app's display as PNG", runScreenshot},
		{"web", "NAME", "print a link for a browser on this machine to show an app (open it within 2 minutes)", runWeb},
		{"view", "NAME [--snapshot OUT.png | --sound OUT.wav]", "show the app, here or on the peer running it; --snapshot saves the first streamed frame, --sound what it plays", runView},
		{"suspend", "NAME", "checkpoint the app to disk; its processes end, nothing is lost", lifecycleCmd("suspend")},
		{"resume", "NAME", "restore a suspended app where it was", lifecycleCmd("resume")},
		{"stop", "NAME", "end the app and remove its container", lifecycleCmd("stop")},
		{"status", "[--json]", "show the daemon's version and CRIU", runStatus},
		{"version", "", "print the version", func(_ context.Context, env *cliEnv, _ []string) error {
			fmt.Fprintln(env.stdout, "handoff", Version)
			return nil
		}},
		{"help", "", "show this list", func(_ context.Context, env *cliEnv, _ []string) error {
			usage(env.stdout)
			return nil
		}},
	}
}

// runTray is reached only in builds without the ui package (tests): the
// handoff binary's main hands `tray` to ui.Main before the CLI sees it.
func runTray(context.Context, *cliEnv, []string) error {
	return errors.New("this build of handoff has no tray; build the handoff command (go build github.com/handoff/handoff)")
}

// Main runs the handoff command line and returns the exit code.
func Main(args []string) int {
	return mainWith(args, os.Stdout, os.Stderr)
}

func mainWith(args []string, stdout, stderr io.Writer) int {
	env := &cliEnv{stdin: os.Stdin, stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("handoff", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.StringVar(&env.socket, "socket", "", "the daemon's socket (default $HANDOFF_SOCKET or "+DefaultSocket+")")
	showVersion := global.Bool("version", false, "print the version")
	global.Usage = func() { usage(stderr) }
	if err := global.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "handoff", Version)
		return 0
	}
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr)
		return 2
	}
	for _, c := range commands {
		if c.name != rest[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := c.run(ctx, env, rest[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			var ue usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "handoff %s: %v\nusage: handoff %s %s\n", c.name, err, c.name, c.args)
				return 2
			}
			fmt.Fprintf(stderr, "handoff: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "handoff: unknown command %q\n", rest[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Handoff %s — move running apps between workstations\n\nusage: handoff [--socket PATH] COMMAND [ARGS]\n\n", Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseFlags parses flags that may appear before or after positional args.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runDaemon(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	stateDir := fs.String("state-dir", DefaultStateDir, "where apps, checkpoints and identity are kept")
	listen := fs.String("listen", fmt.Sprintf(":%d", DefaultPeerPort), "the peer channel's address")
	name := fs.String("name", "", "this device's name on the network (default: the hostname)")
	noMDNS := fs.Bool("no-mdns", false, "do not announce or browse with mDNS")
	webListen := fs.String("web", DefaultWebListen, "loopback address of the browser viewer; empty turns it off")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{"bad --log-level: " + *level}
	}
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(log)
	d, err := StartDaemon(ctx, DaemonConfig{StateDir: *stateDir, Socket: SocketPath(env.socket), Logger: log,
		PeerListen: *listen, WebListen: *webListen, Name: *name, NoDiscovery: *noMDNS})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down; running apps keep running")
	return d.Close()
}

func runRun(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	name := fs.String("name", "", "the app's name (default: the command's name)")
	size := fs.String("size", "", "display size WxH (default 1280x800)")
	memory := fs.String("memory", "", "memory limit, e.g. 2G (default 4G)")
	as := fs.String("as", "", "the user the app runs as (only root may name another user, or root)")
	// The command's own flags follow it: stop at the first positional (or --).
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return usageError{"no command given"}
	}
	req := RunRequest{Name: *name, Args: cmd, As: *as, Env: LocaleEnv(os.Environ())}
	if os.Geteuid() == 0 {
		req.SudoUser = os.Getenv("SUDO_USER")
	}
	if req.Name == "" {
		req.Name = filepath.Base(cmd[0])
	}
	if *size != "" {
		w, h, ok := strings.Cut(*size, "x")
		req.Width, _ = strconv.Atoi(w)
		req.Height, _ = strconv.Atoi(h)
		if !ok || req.Width < 64 || req.Height < 64 {
			return usageError{"bad --size " + *size + ", want e.g. 1280x800"}
		}
	}
	if *memory != "" {
		n, err := parseBytes(*memory)
		if err != nil {
			return usageError{err.Error()}
		}
		req.MemoryLimit = n
	}
	info, err := env.client().Run(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s is running (pid %d, display %dx%d)\n", info.Name, info.PID, info.Width, info.Height)
	return nil
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q, want e.g. 512M or 2G", s)
	}
	return n * mult, nil
}

func runLs(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	apps, err := env.client().Apps(ctx)
	if err != nil {
		return err
	}
	remote, _ := env.client().Remote(ctx) // older daemons or no peer channel: none
	if *asJSON {
		return printJSON(env.stdout, apps)
	}
	if len(apps) == 0 && len(remote) == 0 {
		fmt.Fprintln(env.stdout, "no apps; start one with `handoff run -- xterm`")
		return nil
	}
	for _, r := range remote {
		apps = append(apps, engine.Info{Name: r.Name, State: engine.State("on " + r.PeerName), Started: r.Since})
	}
	writeAppTable(env.stdout, apps, time.Now())
	return nil
}

func writeAppTable(w io.Writer, apps []engine.Info, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tSIZE\tUPTIME\tCOMMAND")
	for _, a := range apps {
		pid, size, up := "-", "-", "-"
		if a.PID != 0 {
			pid = strconv.Itoa(a.PID)
		}
		switch {
		case a.MemoryBytes > 0:
			size = humanSize(a.MemoryBytes)
		case a.ImageBytes > 0:
			size = humanSize(a.ImageBytes) + " on disk"
		}
		if !a.Started.IsZero() && a.State == engine.StateRunning {
			up = now.Sub(a.Started).Truncate(time.Second).String()
		}
		state := string(a.State)
		if a.Error != "" && a.State != engine.StateRunning {
			state += " (!)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, state, pid, size, up, strings.Join(a.Command, " "))
	}
	tw.Flush()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0fM", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0fK", float64(n)/(1<<10))
	}
}

func oneName(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		return nil, usageError{fmt.Sprintf("want %d argument(s), got %d", want, len(pos))}
	}
	return pos, nil
}

func runHandles(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("handles", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	pos, err := oneName(fs, args, 1)
	if err != nil {
		return err
	}
	m, err := env.client().Handles(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, m)
	}
	return handles.WriteTable(env.stdout, m)
}

func runScreenshot(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("screenshot", flag.ContinueOnError), args, 2)
	if err != nil {
		return err
	}
	return writeFileAtomic(pos[1], func(w io.Writer) error {
		return env.client().Screenshot(ctx, pos[0], w)
	})
}

// writeFileAtomic writes path through a temporary file, so that a failure
// never leaves half a file under the name the user asked for.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func lifecycleCmd(op string) func(context.Context, *cliEnv, []string) error {
	return func(ctx context.Context, env *cliEnv, args []string) error {
		pos, err := oneName(flag.NewFlagSet(op, flag.ContinueOnError), args, 1)
		if err != nil {
			return err
		}
		c, name := env.client(), pos[0]
		start := time.Now()
		switch op {
		case "suspend":
			info, err := c.Suspend(ctx, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "%s suspended in %s (%s on disk); `handoff resume %s` brings it back\n",
				name, time.Since(start).Round(time.Millisecond), humanSize(info.ImageBytes), name)
		case "resume":
			info, err := c.Resume(ctx, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "%s resumed in %s (pid %d)\n", name, time.Since(start).Round(time.Millisecond), info.PID)
		case "stop":
			if err := c.Stop(ctx, name); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "%s stopped and removed\n", name)
		}
		return nil
	}
}

func runStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := env.client().Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, st)
	}
	fmt.Fprintf(env.stdout, "daemon:  handoff %s, state in %s, %d app(s)\n", st.Version, st.StateDir, st.Apps)
	if st.Criu != nil {
		fmt.Fprintf(env.stdout, "CRIU:    %s at %s (dirty tracking: %v, lazy pages: %v)\n",
			st.Criu.VersionString(), st.Criu.Path, st.Criu.MemTrack, st.Criu.LazyPages)
	} else {
		fmt.Fprintf(env.stdout, "CRIU:    %s\n", st.CriuErr)
	}
	if len(st.Handoffs) == 0 {
		return nil
	}
	fmt.Fprintln(env.stdout, "\nrecent handoffs:")
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tAPP\tDIRECTION\tOUTCOME\tDOWNTIME\tSENT\tPHASES")
	recs := st.Handoffs
	if len(recs) > 10 {
		recs = recs[len(recs)-10:]
	}
	for _, r := range recs {
		dir := "→ " + r.Peer
		if r.Direction == "in" {
			dir = "← " + r.Peer
		}
		outcome := r.Outcome
		if r.Error != "" {
			outcome += ": " + r.Error
		}
		var phases []string
		for _, p := range []string{"request", "handles", "pre-copy", "freeze", "final", "restore"} {
			if ms, ok := r.PhasesMS[p]; ok {
				phases = append(phases, fmt.Sprintf("%s %dms", p, ms))
			}
		}
		down, sent := "-", "-"
		if r.Downtime > 0 {
			down = fmt.Sprintf("%dms", r.Downtime)
		}
		if r.Bytes > 0 {
			sent = humanSize(r.Bytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Finished.Local().Format("15:04:05"), r.App, dir, outcome, down, sent, strings.Join(phases, ", "))
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
