package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine/migration"
)

func init() {
	commands = append(commands,
		command{"id", "", "show this device's ID and name (give the ID to peers that should trust it)", runID},
		command{"peers", "[--json] | add HOST[:PORT] | remove ID|NAME|ADDRESS",
			"list devices seen on the network, trusted ones and those at saved addresses; add or remove an address where a peer may be found (networks without mDNS)", runPeers},
		command{"trust", "DEVICE-ID [--name N] [--auto-accept]", "trust a device: it may hand apps here and take them (root or an administrator)", runTrust},
		command{"untrust", "DEVICE-ID", "stop trusting a device (root or an administrator)", runUntrust},
		command{"pair", "PEER [--yes]", "pair with a device: both screens show a code, both users confirm (root or an administrator)", runPair},
		command{"send", "NAME PEER", "move a running app to a peer; returns when it runs there", runSend},
		command{"bring-back", "NAME", "bring an app handed to a peer back here", runBringBack},
		command{"run-here", "NAME", "run an app here again whose handoff's destination cannot say whether it took it (it may then run twice)", runRunHere},
		command{"requests", "", "list incoming handoffs waiting for an answer", runRequests},
		command{"accept", "REQUEST", "take an incoming handoff", answerCmd(true)},
		command{"decline", "REQUEST", "refuse an incoming handoff", answerCmd(false)},
	)
}

func runID(ctx context.Context, env *cliEnv, args []string) error {
	if _, err := oneName(flag.NewFlagSet("id", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	id, err := env.client().ID(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s\n  name: %s\n  short: %s, peer port %d\n", id.ID, id.Name, id.Short, id.Port)
	return nil
}

func runPeers(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 && args[0] == "add" {
		return runPeersAdd(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "remove" {
		return runPeersRemove(ctx, env, args[1:])
	}
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unknown peers command %q", pos[0])}
	}
	c := env.client()
	ps, err := c.Peers(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, ps) // each device's saved addresses are in "saved"
	}
	addrs, err := c.PeerAddresses(ctx)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		fmt.Fprintln(env.stdout, "no other devices seen yet (they appear here within a second of starting their daemon;")
		fmt.Fprintln(env.stdout, "on a network without mDNS, add one by its address: `handoff peers add HOST`)")
	} else if err := printPeers(env, ps); err != nil {
		return err
	}
	if len(addrs) > 0 {
		fmt.Fprintln(env.stdout, "\nSaved addresses:")
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		for _, a := range addrs {
			fmt.Fprintf(tw, "  %s\t%s\n", a.Addr, addressState(a))
		}
		tw.Flush()
	}
	return nil
}

// addressState says what was found at a saved address.
func addressState(a discovery.AddressState) string {
	who := "nobody has answered yet"
	if !a.ID.IsZero() {
		who = fmt.Sprintf("%s (%s)", orDash(a.Name), a.ID.Short())
	}
	switch {
	case a.Online:
		return who + ", answering"
	case a.ID.IsZero():
		return who + ": " + a.Error
	default:
		return fmt.Sprintf("%s, not answering (last seen %s): %s", who, seenAgo(a.LastSeen), a.Error)
	}
}

func seenAgo(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Truncate(time.Second).String() + " ago"
}

func runPeersAdd(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("peers add", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	added, err := env.client().AddPeer(ctx, pos[0])
	if err != nil {
		return err
	}
	a := added.Address
	switch v := added.Peer; {
	case v != nil && a.Online && v.Trusted:
		fmt.Fprintf(env.stdout, "saved %s: %s (%s) answers there, and is paired\n", a.Addr, v.Name, v.ID.Short())
	case v != nil && a.Online:
		fmt.Fprintf(env.stdout, "saved %s: %s (%s) answers there; pair with it: `sudo handoff pair %s`\n", a.Addr, v.Name, v.ID.Short(), v.ID)
	default:
		fmt.Fprintf(env.stdout, "saved %s, but nothing answers there now (%s); it is dialled again when the network changes and from time to time\n",
			a.Addr, a.Error)
	}
	return nil
}

func runPeersRemove(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("peers remove", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	gone, err := env.client().RemovePeer(ctx, pos[0])
	if err != nil {
		return err
	}
	for _, a := range gone {
		fmt.Fprintf(env.stdout, "removed %s (%s); trust is unchanged (`sudo handoff untrust` for that)\n", a.Addr, orDash(a.Name))
	}
	return nil
}

func printPeers(env *cliEnv, ps []PeerView) error {
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDEVICE\tADDRESSES\tONLINE\tTRUSTED\tLAST SEEN")
	for _, p := range ps {
		online, trusted, seen := "no", "no", "-"
		if p.Online {
			online = "yes"
		}
		if p.Trusted {
			trusted = "yes"
			if p.AutoAccept {
				trusted += " (auto-accept)"
			}
		}
		if p.Impostor {
			trusted = "IMPOSTOR: wrong certificate"
		}
		if !p.LastSeen.IsZero() {
			seen = seenAgo(p.LastSeen)
		}
		addrs := make([]string, 0, len(p.Addrs))
		for _, a := range p.Addrs {
			addrs = append(addrs, a.String())
		}
		if len(addrs) == 0 && len(p.Saved) > 0 {
			addrs = append(addrs, p.Saved...) // where it is looked for
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.ID.Short(), strings.Join(addrs, ","), online, trusted, seen)
	}
	return tw.Flush()
}

func runTrust(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("trust", flag.ContinueOnError)
	name := fs.String("name", "", "a name for the device (default: the name it announces)")
	auto := fs.Bool("auto-accept", false, "take its handoffs without asking")
	pos, err := oneName(fs, args, 1)
	if err != nil {
		return err
	}
	v, err := env.client().Trust(ctx, pos[0], TrustRequest{Name: *name, AutoAccept: *auto})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "trusting %s (%s)\n", orDash(v.Name), v.ID.Short())
	return nil
}

func runPair(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("pair", flag.ContinueOnError)
	yes := fs.Bool("yes", false, "the codes were compared already: do not ask")
	pos, err := oneName(fs, args, 1)
	if err != nil {
		return err
	}
	c := env.client()
	// Both devices draw a share of the code now: it is new each time, and
	// the other device shows it from this moment.
	pc, err := c.PairCode(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "Pairing with %s (%s). Code: %s\n", pc.Peer, pc.ID.Short(), pc.Code)
	if !*yes {
		fmt.Fprintf(env.stdout, "Does %s show the same code? [y/N] ", pc.Peer)
		var answer string
		fmt.Fscanln(env.stdin, &answer)
		if !strings.EqualFold(strings.TrimSpace(answer), "y") && !strings.EqualFold(strings.TrimSpace(answer), "yes") {
			_ = c.PairCancel(ctx, pos[0])
			return fmt.Errorf("pairing cancelled: the codes were not confirmed")
		}
	}
	fmt.Fprintf(env.stdout, "waiting for %s to confirm (its tray, or `sudo handoff accept pair-…` there)…\n", pc.Peer)
	v, err := c.Pair(ctx, pos[0], pc.Code)
	if err != nil {
		_ = c.PairCancel(context.WithoutCancel(ctx), pos[0])
		return err
	}
	fmt.Fprintf(env.stdout, "paired: %s (%s) and this device trust each other\n", v.Name, v.ID.Short())
	return nil
}

func runUntrust(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("untrust", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	return env.client().Untrust(ctx, pos[0])
}

func runSend(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("send", flag.ContinueOnError), args, 2)
	if err != nil {
		return err
	}
	c := env.client()
	// Show progress from the event stream while the request runs.
	evCtx, stop := context.WithCancel(ctx)
	defer stop()
	if events, err := c.Events(evCtx); err == nil {
		go showProgress(env, events, pos[0])
	}
	res, err := c.Send(ctx, pos[0], pos[1])
	stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\r%s now runs on %s: down for %s, %s sent\n", pos[0], pos[1],
		res.Downtime.Round(time.Millisecond), humanSize(res.Bytes))
	printHomeFiles(env.stdout, pos[1], res)
	return nil
}

func showProgress(env *cliEnv, events <-chan Event, app string) {
	for ev := range events {
		h := ev.Handoff
		if ev.Type != EventHandoff || h == nil || h.App != app {
			continue
		}
		line := h.Phase
		if h.Round > 1 {
			line += fmt.Sprintf(" (round %d)", h.Round)
		}
		if h.Total > 0 {
			line += fmt.Sprintf(" %s/%s at %s/s, %s left", humanSize(h.Bytes), humanSize(h.Total), humanSize(int64(h.Rate)), h.ETA.Round(100*time.Millisecond))
		}
		if h.Phase != migration.PhaseDone && h.Phase != migration.PhaseRollback {
			fmt.Fprintf(env.stderr, "\r%-70s", line)
		}
	}
}

func runBringBack(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("bring-back", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	info, err := env.client().BringBack(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s is back and running here (pid %d)\n", info.Name, info.PID)
	return nil
}

func runRunHere(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := oneName(flag.NewFlagSet("run-here", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "%s stays frozen here while Handoff asks the other device whether it took it. Running it here now\n"+
		"means: if that device did restore it, %s runs on both machines, each with its own later changes.\n", pos[0], pos[0])
	info, err := env.client().RunHere(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s runs here again (pid %d)\n", info.Name, info.PID)
	return nil
}

func runRequests(ctx context.Context, env *cliEnv, args []string) error {
	rs, err := env.client().Requests(ctx)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		fmt.Fprintln(env.stdout, "no handoffs waiting")
		return nil
	}
	for _, r := range rs {
		if r.Kind == "pair" {
			fmt.Fprintf(env.stdout, "%s: %s (%s) asks to pair, code %s (`sudo handoff accept %s` if its screen shows the same code)\n", r.ID, r.From, r.FromID.Short(), r.Code, r.ID)
			continue
		}
		fmt.Fprintf(env.stdout, "%s: %s (%s) wants to hand you %s (`handoff accept %s` or `handoff decline %s`)\n", r.ID, r.From, r.FromID.Short(), r.App, r.ID, r.ID)
	}
	return nil
}

func answerCmd(ok bool) func(context.Context, *cliEnv, []string) error {
	return func(ctx context.Context, env *cliEnv, args []string) error {
		pos, err := oneName(flag.NewFlagSet("answer", flag.ContinueOnError), args, 1)
		if err != nil {
			return err
		}
		return env.client().Answer(ctx, pos[0], ok)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printHomeFiles says what became of the user's files that went with an app.
func printHomeFiles(w io.Writer, peer string, res migration.Result) {
	switch {
	case res.SharedHome:
		fmt.Fprintf(w, "your files: %s shares your home, nothing was copied\n", peer)
	case res.HomeFiles > 0:
		fmt.Fprintf(w, "your files: %d the app uses, %s copied to %s\n", res.HomeFiles, humanSize(res.HomeBytes), peer)
	}
	if res.Home != nil {
		for _, k := range res.Home.Kept {
			fmt.Fprintf(w, "  %s was changed on %s too: both are kept there, this version as %q\n", k.Path, peer, k.SavedAs)
		}
	}
}
