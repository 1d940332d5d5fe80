package migration

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/handles"
)

// Sender hands apps of one engine to peers.
type Sender struct {
	Engine  *engine.Engine
	From    string   // this machine's human name
	WorkDir string   // where dumps are staged
	Journal *Journal // where handoffs are kept across a restart; nil: nowhere
	Log     *slog.Logger
	// Reach finds the device with the given ID now (its address may have
	// changed), to ask it how a handoff whose answer was lost ended.
	Reach func(ctx context.Context, device string) (Peer, error)
	// Ended, when set, hears how every handoff ended (OutDone: the app
	// runs there; OutRolledBack: here), before it is announced. late is
	// true for an end Send did not see (its answer was lost, or the daemon
	// restarted meanwhile): then no progress report announces it.
	Ended func(e Entry, how OutState, late bool)

	mu        sync.Mutex
	resolving map[string]*resolution // by app name
	ctx       context.Context        // the sender's own work in the background; Close ends it
	stop      context.CancelFunc
}

// life is the context of the sender's background work.
func (s *Sender) life() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		s.ctx, s.stop = context.WithCancel(context.Background())
	}
	return s.ctx
}

// ErrOutcomeUnknown is returned when the answer to the commit was lost:
// the app is frozen here until the destination says whether it runs
// there, which the sender keeps asking (see Sender.Ended).
var ErrOutcomeUnknown = errors.New("it is not known yet whether the app runs on the other machine")

// outgoing is one handoff on the source: every state change goes through
// to, which checks the table (states.go), journals what a restart must
// know, and reports the phase once.
type outgoing struct {
	s        *Sender
	out      *engine.Outgoing
	entry    Entry
	progress func(Progress)
	res      *Result
	since    time.Time // when the current state began
}

func (o *outgoing) to(st OutState) error { return o.toBecause(st, nil) }

// toBecause is to, with the reason a handoff rolled back.
func (o *outgoing) toBecause(st OutState, why error) error {
	if err := checkOut(o.entry.Out, st); err != nil {
		return err
	}
	now := time.Now()
	if p := phaseOf(o.entry.Out); p != "" && o.res != nil {
		o.res.Phases[p] += now.Sub(o.since)
	}
	o.entry.Out, o.since = st, now
	if j := o.s.Journal; j != nil {
		// What a restart must know: the destination may restore the app
		// from the commit on; before, a thaw is always safe.
		sync := st == OutCommitting || st == OutUnknown
		var err error
		if st.Final() {
			j.remove("out", o.entry.ID)
		} else {
			err = j.put(o.entry, sync)
		}
		if err != nil && sync {
			return err
		}
	}
	failpointHit("out:" + string(st))
	if st.Final() && o.s.Ended != nil {
		o.s.Ended(o.entry, st, false) // before it is announced: a client told "done" may bring the app back at once
	}
	if p := phaseOf(st); p != "" {
		pr := Progress{Phase: p}
		if why != nil {
			pr.Error = why.Error()
		}
		o.progress(pr)
	}
	return nil
}

// phaseOf is the phase a source state reports.
func phaseOf(st OutState) string {
	switch st {
	case OutSyncing:
		return PhaseHandles
	case OutPreCopy:
		return PhasePreCopy
	case OutFrozen:
		return PhaseFreeze
	case OutFinal:
		return PhaseFinal
	case OutCommitting:
		return PhaseRestore
	case OutUnknown:
		return PhaseUnknown
	case OutDone:
		return PhaseDone
	case OutRolledBack:
		return PhaseRollback
	}
	return ""
}

// rollBack ends a handoff that failed before its commit: the destination
// is told to drop what it received, and the app runs here again. Neither
// may be skipped because ctx ended.
func (o *outgoing) rollBack(ctx context.Context, peer Peer, cause error) error {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if derr := peer.call(bg, http.MethodDelete, "/"+o.entry.ID, nil, nil); derr != nil {
		o.s.log().Warn("could not tell the destination to drop the handoff; trying again in the background", "peer", peer.Name, "err", derr)
		go o.s.dropLater(peer.ID, o.entry.ID)
	}
	if terr := runHere(bg, o.out); terr != nil {
		cause = fmt.Errorf("%w; and %v", cause, terr)
	}
	if err := o.toBecause(OutRolledBack, cause); err != nil {
		o.s.log().Error("roll back", "app", o.entry.App, "err", err)
	}
	return cause
}

// Send moves app name to peer. It returns once the app runs there; on a
// failure before the commit the app keeps running here (thawed if it was
// frozen) and the destination is told to drop what it received. When the
// answer to the commit is lost it returns ErrOutcomeUnknown: the app stays
// frozen here while the sender asks the destination how it ended.
func (s *Sender) Send(ctx context.Context, name string, peer Peer, progress func(Progress)) (res Result, err error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	log := s.log()
	res.Phases = map[string]time.Duration{}
	criu, err := s.Engine.Criu(ctx)
	if err != nil {
		return res, err
	}
	out, err := s.Engine.Outgoing(name, peer.Name)
	if err != nil {
		return res, fmt.Errorf("send %q: %w", name, err)
	}
	handedOver := false // a resolution now holds the app
	defer func() {
		if !handedOver {
			out.Close()
		}
	}()
	info := out.Info()
	if info.State != engine.StateRunning {
		return res, fmt.Errorf("send %q: it is %s, not running", name, info.State)
	}
	spec := out.Spec()

	// 1. Offer: the destination can refuse before anything happens here.
	// A probe in the user's home tells whether the destination sees the
	// same home (then the user's files need not travel).
	requested := time.Now()
	progress(Progress{Phase: PhaseRequest})
	probe, removeProbe, perr := out.HomeProbe()
	if perr != nil {
		log.Debug("no home probe: the user's files will be compared", "app", name, "err", perr)
		removeProbe = func() {}
	}
	plat, perr := LocalPlatform()
	if perr != nil {
		log.Warn("the offer goes without CPU features; the destination may refuse it", "err", perr)
	}
	var acc Accepted
	err = peer.call(ctx, http.MethodPost, "/offer", Offer{
		Version: Version, Spec: spec, From: s.From, Criu: criu, Arch: runtime.GOARCH,
		Kernel: plat.Kernel, CPU: plat.CPU, MemoryBytes: info.MemoryBytes, HomeProbe: probe,
	}, &acc)
	removeProbe()
	if err != nil {
		return res, err
	}
	res.Phases[PhaseRequest] = time.Since(requested)
	res.SharedHome = acc.SharedHome
	o := &outgoing{s: s, out: out, progress: progress, res: &res, since: time.Now(),
		entry: Entry{ID: acc.ID, Role: "out", App: name, User: spec.User.Name, Peer: peer.ID, PeerName: peer.Name,
			Out: OutOffered, Started: time.Now().UTC()}}
	if s.Journal != nil {
		_ = s.Journal.put(o.entry, false)
	}
	id := acc.ID
	defer func() {
		if err != nil && !o.entry.Out.Final() && o.entry.Out.mayThaw() {
			err = o.rollBack(ctx, peer, err)
		}
	}()

	// 2. Handles: blockers stop us before the freeze; files the destination
	// lacks go along with the upper dir.
	if err = o.to(OutSyncing); err != nil {
		return res, err
	}
	handlesStart := time.Now()
	m, err := out.Handles(ctx)
	if err != nil {
		return res, err
	}
	if err = engine.BlockingError(m); err != nil {
		return res, fmt.Errorf("send %q: %w; the app keeps running here", name, err)
	}
	scanned := time.Now()
	work, err := os.MkdirTemp(s.WorkDir, "send-"+name+"-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	// The first pre-copy dump starts while the destination checks the
	// manifest (it hashes the files it has, which takes a while the first
	// time); its pieces go only once that answer is in.
	first := s.startSnapshot(ctx, out, filepath.Join(work, roundName(1)))
	var lacks MissingFiles
	if err = peer.call(ctx, http.MethodPost, "/"+id+"/manifest", m, &lacks); err != nil {
		_ = first.wait()
		return res, err
	}
	// The answer is the destination's word: only files the app's own
	// manifest lists, with the same content, may go along.
	extra, err := filesToShip(m.Required(), lacks.Files)
	if err != nil {
		_ = first.wait()
		return res, fmt.Errorf("send %q: %s %w; the handoff is cancelled and the app keeps running here", name, peer.Name, err)
	}
	log.Debug("handles", "app", name, "entries", len(m.Handles), "scan", scanned.Sub(handlesStart), "check", time.Since(scanned))

	// 3. Pre-copy while the app runs, in rounds: each sends only what the
	// destination does not hold yet, so a round is shorter than the one
	// before, and so is what the app dirties during it.
	if err = o.to(OutPreCopy); err != nil {
		_ = first.wait()
		return res, err
	}
	var sent sentIndex
	n, err := s.preCopy(ctx, out, peer, id, work, first, &sent, progress, &res)
	res.Bytes += n
	if err != nil {
		return res, err
	}

	// 4. Freeze and final dump: from here the app is down.
	freezeStart := time.Now()
	if err = out.Freeze(ctx); err != nil {
		return res, err
	}
	if err = o.to(OutFrozen); err != nil {
		return res, err
	}
	final := filepath.Join(work, "final")
	if err = out.DumpFrozen(ctx, final); err != nil {
		return res, err
	}
	if err = o.to(OutFinal); err != nil {
		return res, err
	}
	n, err = s.sendRound(ctx, peer, id, "final", final, nil, &sent, func(p Progress) {
		p.Phase = PhaseFinal
		progress(p)
	})
	res.Bytes += n
	if err != nil {
		return res, err
	}
	// Locks the app holds on files of a home the destination shares (a
	// home on a file server) must be free before the restore takes them
	// there: the copy here then ends before the commit, and stays as a
	// suspended app on its final image until the destination runs it.
	var shared []handles.Handle
	if acc.SharedHome {
		shared = m.SharedLocks()
	}
	// The final dump is sent too: it goes while the destination works (its
	// dirty pages would otherwise be written back, and unmounting the
	// app's overlay at release waits for the disk).
	removed := make(chan struct{})
	if len(shared) > 0 {
		close(removed) // the final image is the suspended app's
	} else {
		go func() {
			defer close(removed)
			_ = os.RemoveAll(final)
		}()
	}
	defer func() { <-removed }()
	// The user's files the app uses, read while it is frozen.
	home, homeBytes, err := s.sendHomeFiles(ctx, peer, id, out, m, acc.SharedHome)
	res.Bytes += homeBytes
	res.HomeFiles, res.HomeBytes = len(home), homeBytes
	if err != nil {
		return res, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(out.ExportUpper(ctx, pw, extra)) }()
	counted := &countingReader{r: pr}
	err = peer.stream(ctx, http.MethodPut, "/"+id+"/upper", counted)
	pr.Close()
	res.Bytes += counted.n
	if err != nil {
		return res, err
	}
	// What the app read of the user's files is remembered once it runs
	// there; the list is taken now, while the app is still here.
	read := out.HomeRead()

	if len(shared) > 0 {
		log.Info("the app holds locks on files of the home the destination shares; its copy here ends before the restore",
			"app", name, "files", lockedPaths(shared))
		if err = out.SuspendFrozen(ctx, final); err != nil {
			return res, err
		}
	}

	// 5. Commit: from here the destination may run the app, so nothing
	// thaws it here on its own any more.
	if err = o.to(OutCommitting); err != nil {
		return res, err
	}
	var c Committed
	err = peer.call(ctx, http.MethodPost, "/"+id+"/commit", nil, &c)
	var answered *AnsweredError
	switch {
	case errors.As(err, &answered):
		// The destination answered no: it dropped everything and fenced
		// the handoff, so it will never run the app.
		return res, o.rollBack(ctx, peer, fmt.Errorf("%s could not run %q: %w", peer.Name, name, err))
	case err != nil:
		log.Warn("the answer to the commit was lost; asking the destination how it ended", "app", name, "peer", peer.Name, "err", err)
		if jerr := o.to(OutUnknown); jerr != nil {
			log.Error("journal the unknown outcome", "app", name, "err", jerr)
		}
		handedOver = true
		s.startResolution(o.entry, out)
		return res, fmt.Errorf("%w (the link failed: %v); %s stays frozen here until %s says", ErrOutcomeUnknown, err, name, peer.Name)
	}
	res.Downtime = time.Since(freezeStart)
	res.Info = c.Info
	res.Assemble = time.Duration(c.AssembleMillis) * time.Millisecond
	res.Restore = time.Duration(c.RestoreMillis) * time.Millisecond
	res.Home = c.Home
	// The files that went are now what both machines last agreed on: a
	// later arrival here of other versions may replace them.
	if !acc.SharedHome {
		if err := s.Engine.RecordHomeSync(spec.User.Name, home, read); err != nil {
			log.Warn("remember the user's files as synced", "app", name, "err", err)
		}
	}

	// 6. The app runs there: the frozen copy here goes.
	cleanup := time.Now()
	<-removed
	removedAt := time.Now()
	s.finish(ctx, o.entry, out, peer)
	log.Debug("cleaned up after the handoff", "app", name, "final dump", removedAt.Sub(cleanup), "release", time.Since(removedAt))
	if err := o.to(OutDone); err != nil {
		log.Error("handoff done", "app", name, "err", err)
	}
	return res, nil
}

// dropLater keeps telling a destination to drop a handoff it could not be
// told about (the link was down), so that it removes what it received as
// soon as the link is back, not only when the handoff times out there.
// The device is found anew each time (Reach): it may have moved, or this
// daemon may have just started and not seen it yet.
func (s *Sender) dropLater(device, id string) {
	if s.Reach == nil {
		return
	}
	life := s.life()
	for wait := time.Second; wait < 2*time.Minute; wait *= 2 {
		select {
		case <-life.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(life, 10*time.Second)
		peer, err := s.Reach(ctx, device)
		if err == nil {
			err = peer.call(ctx, http.MethodDelete, "/"+id, nil, nil)
		}
		cancel()
		var answered *AnsweredError
		if err == nil || errors.As(err, &answered) {
			return // dropped, or it no longer knows the handoff
		}
	}
}

// finish ends a handoff whose app runs on the destination: the frozen copy
// here goes, and the destination hears that the source knows.
func (s *Sender) finish(ctx context.Context, e Entry, out *engine.Outgoing, peer Peer) {
	switch out.State() {
	case engine.StateFrozen:
		if err := out.Release(context.WithoutCancel(ctx)); err != nil {
			s.log().Warn("release after handoff", "app", e.App, "err", err)
		}
	case engine.StateSuspended: // ended before the commit (its locks)
		if err := out.Stop(context.WithoutCancel(ctx)); err != nil {
			s.log().Warn("remove the suspended copy after handoff", "app", e.App, "err", err)
		}
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := peer.call(bg, http.MethodPost, "/"+e.ID+"/done", nil, nil); err != nil {
		s.log().Debug("the destination did not hear that the handoff is done; it forgets it later", "app", e.App, "err", err)
	}
}

// sendHomeFiles sends the files of the user's home the app uses and the
// destination lacks (none when it shares the home), and returns them all
// and the bytes sent. The app is frozen: the files hold still.
func (s *Sender) sendHomeFiles(ctx context.Context, peer Peer, id string, out *engine.Outgoing, m *handles.Manifest, shared bool) ([]engine.HomeFile, int64, error) {
	if shared {
		return nil, 0, nil
	}
	files, err := out.HomeFiles(ctx, m)
	if err != nil || len(files) == 0 {
		return nil, 0, err
	}
	var need HomeNeed
	if err := peer.call(ctx, http.MethodPost, "/"+id+"/home", HomeList{Files: files}, &need); err != nil {
		return nil, 0, err
	}
	if len(need.Paths) == 0 {
		return files, 0, nil
	}
	listed := map[string]engine.HomeFile{}
	for _, f := range files {
		listed[f.Path] = f
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for _, p := range need.Paths {
			f, ok := listed[p]
			if !ok {
				pw.CloseWithError(fmt.Errorf("%w: the destination asked for %q, which the app does not use", ErrUnlistedFile, p))
				return
			}
			if err := writeHomeEntry(tw, out, f); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	counted := &countingReader{r: pr}
	err = peer.stream(ctx, http.MethodPut, "/"+id+"/home/files", counted)
	pr.Close()
	return files, counted.n, err
}

// writeHomeEntry adds one of the user's files to a tar stream, exactly as
// it was listed: a file that changed since is an error, not a surprise.
func writeHomeEntry(tw *tar.Writer, out *engine.Outgoing, f engine.HomeFile) error {
	in, err := out.OpenHomeFile(f.Path)
	if err != nil {
		return fmt.Errorf("send %s: %w", f.Path, err)
	}
	defer in.Close()
	if err := tw.WriteHeader(&tar.Header{Name: f.Path, Typeflag: tar.TypeReg, Mode: int64(f.Mode), Size: f.Size, ModTime: f.MTime}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, in, f.Size); err != nil {
		return fmt.Errorf("send %s: %w", f.Path, err)
	}
	return nil
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// ErrUnlistedFile: the destination asked for a file that the app's manifest
// does not list, or listed with other content. Only the files the app itself
// holds open or mapped may travel; anything else would let a peer read the
// sender's disk (a key, /etc/shadow) by naming it.
var ErrUnlistedFile = errors.New("asked for files the app does not hold")

// filesToShip checks the destination's answer to the manifest against what
// the manifest required, and returns the paths to send: the manifest's own
// strings, each once. Any entry that does not match a requirement in path,
// kind and hash refuses the whole answer.
func filesToShip(required []handles.Requirement, asked []handles.Requirement) ([]string, error) {
	listed := make(map[string]handles.Requirement, len(required))
	for _, r := range required {
		listed[r.Path] = r
	}
	var out, refused []string
	seen := map[string]bool{}
	for _, a := range asked {
		r, ok := listed[a.Path]
		if !ok || r.Hash != a.Hash || r.Kind != a.Kind {
			refused = append(refused, fmt.Sprintf("%q", a.Path))
			continue
		}
		if !seen[r.Path] {
			seen[r.Path] = true
			out = append(out, r.Path)
		}
	}
	if len(refused) > 0 {
		more := ""
		if len(refused) > 3 {
			more = fmt.Sprintf(" and %d more", len(refused)-3)
			refused = refused[:3]
		}
		return nil, fmt.Errorf("%w: %s%s; none was sent", ErrUnlistedFile, strings.Join(refused, ", "), more)
	}
	return out, nil
}

// lockedPaths names the files of handles, for logs.
func lockedPaths(hs []handles.Handle) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Path)
	}
	return out
}

// runHere brings the copy of the app here back: thawed if frozen, resumed
// from its final image if its copy here had ended (SuspendFrozen).
func runHere(ctx context.Context, out *engine.Outgoing) error {
	switch out.State() {
	case engine.StateFrozen:
		if err := out.Thaw(ctx); err != nil {
			return fmt.Errorf("thawing the app here failed: %w", err)
		}
	case engine.StateSuspended:
		if err := out.Resume(ctx); err != nil {
			return fmt.Errorf("resuming the app here from its final image failed: %w (it stays suspended here: `handoff resume %s`)", err, out.Name())
		}
	}
	return nil
}
