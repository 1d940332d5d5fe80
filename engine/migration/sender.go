package migration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/handoff/handoff/engine/delta"
	"github.com/handoff/handoff/engine/handles"
)

// Peer is how the sender reaches the destination's handoff endpoint.
type Peer struct {
	HTTP *http.Client
	Base string // e.g. https://192.0.2.2:7466/peer/v1/handoff
	Name string // for messages
}

// RefusedError is a destination's refusal, before anything was frozen.
type RefusedError struct {
	Peer string
	Refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s refused the handoff: %s", e.Peer, e.Refusal.Error)
}

// Sender hands apps of one engine to peers.
type Sender struct {
	Engine  *engine.Engine
	From    string // this machine's human name
	WorkDir string // where dumps are staged
	Log     *slog.Logger
}

// Send moves app name to peer. It returns once the app runs there; on any
// failure the app keeps running here (thawed if it was frozen) and the
// destination is told to drop what it received.
func (s *Sender) Send(ctx context.Context, name string, peer Peer, progress func(Progress)) (res Result, err error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	log := s.log()
	res.Phases = map[string]time.Duration{}
	phase := func(p string) func() {
		start := time.Now()
		progress(Progress{Phase: p})
		return func() { res.Phases[p] += time.Since(start) }
	}

	spec, err := s.Engine.Spec(name)
	if err != nil {
		return res, err
	}
	criu, err := s.Engine.Criu(ctx)
	if err != nil {
		return res, err
	}
	info, err := s.Engine.Get(name)
	if err != nil {
		return res, err
	}
	if info.State != engine.StateRunning {
		return res, fmt.Errorf("send %q: it is %s, not running", name, info.State)
	}

	// 1. Offer: the destination can refuse before anything happens here.
	// A probe in the user's home tells whether the destination sees the
	// same home (then the user's files need not travel).
	done := phase(PhaseRequest)
	probe, removeProbe, perr := s.Engine.HomeProbe(name)
	if perr != nil {
		log.Debug("no home probe: the user's files will be compared", "app", name, "err", perr)
		removeProbe = func() {}
	}
	var acc Accepted
	plat, perr := LocalPlatform()
	if perr != nil {
		log.Warn("the offer goes without CPU features; the destination may refuse it", "err", perr)
	}
	err = peer.call(ctx, http.MethodPost, "/offer", Offer{
		Version: Version, Spec: spec, From: s.From, Criu: criu, Arch: runtime.GOARCH,
		Kernel: plat.Kernel, CPU: plat.CPU, MemoryBytes: info.MemoryBytes, HomeProbe: probe,
	}, &acc)
	removeProbe()
	if err != nil {
		return res, err
	}
	res.SharedHome = acc.SharedHome
	done()
	id := acc.ID
	frozen := false
	// suspended: the app's copy here ended before the destination's
	// restore (it held locks the destination must take); a failure
	// resumes it here from the final image.
	suspended := false
	defer func() {
		if err == nil {
			return
		}
		progress(Progress{Phase: PhaseRollback})
		// Tell the destination to drop everything, and bring the app back
		// here if it was frozen. Neither may be skipped because ctx ended.
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := peer.call(bg, http.MethodDelete, "/"+id, nil, nil); derr != nil {
			log.Warn("could not tell the destination to drop the handoff", "peer", peer.Name, "err", derr)
		}
		if frozen {
			if terr := s.Engine.Thaw(bg, name); terr != nil {
				err = fmt.Errorf("%w; and thawing the app here failed: %v", err, terr)
			}
		}
		if suspended {
			if rerr := s.Engine.Resume(context.WithoutCancel(ctx), name); rerr != nil {
				err = fmt.Errorf("%w; and resuming the app here from its final image failed: %v (it stays suspended here: `handoff resume %s`)", err, rerr, name)
			}
		}
	}()

	// 2. Handles: blockers stop us before the freeze; files the destination
	// lacks go along with the upper dir.
	done = phase(PhaseHandles)
	handlesStart := time.Now()
	m, err := s.Engine.SettledHandles(ctx, name)
	if err != nil {
		return res, err
	}
	if err := engine.BlockingError(m); err != nil {
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
	first := s.startSnapshot(ctx, name, filepath.Join(work, roundName(1)))
	var lacks MissingFiles
	if err := peer.call(ctx, http.MethodPost, "/"+id+"/manifest", m, &lacks); err != nil {
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
	done()

	// 3. Pre-copy while the app runs, in rounds: each sends only what the
	// destination does not hold yet, so a round is shorter than the one
	// before, and so is what the app dirties during it.
	done = phase(PhasePreCopy)
	var sent sentIndex
	n, err := s.preCopy(ctx, name, peer, id, work, first, &sent, progress, &res)
	res.Bytes += n
	if err != nil {
		return res, err
	}
	done()

	// 4. Freeze and final dump: from here the app is down.
	freezeStart := time.Now()
	done = phase(PhaseFreeze)
	if err := s.Engine.Freeze(ctx, name); err != nil {
		return res, err
	}
	frozen = true
	final := filepath.Join(work, "final")
	if err := s.Engine.DumpFrozen(ctx, name, final); err != nil {
		return res, err
	}
	done()
	done = phase(PhaseFinal)
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
	home, homeBytes, err := s.sendHomeFiles(ctx, peer, id, name, m, acc.SharedHome)
	res.Bytes += homeBytes
	res.HomeFiles, res.HomeBytes = len(home), homeBytes
	if err != nil {
		return res, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.Engine.ExportUpper(ctx, name, pw, extra)) }()
	counted := &countingReader{r: pr}
	err = peer.stream(ctx, http.MethodPut, "/"+id+"/upper", counted)
	pr.Close()
	res.Bytes += counted.n
	if err != nil {
		return res, err
	}
	done()

	if len(shared) > 0 {
		log.Info("the app holds locks on files of the home the destination shares; its copy here ends before the restore",
			"app", name, "files", lockedPaths(shared))
		if err := s.Engine.SuspendFrozen(ctx, name, final); err != nil {
			return res, err
		}
		frozen, suspended = false, true
	}

	// 5. Commit: the destination restores and confirms it runs.
	done = phase(PhaseRestore)
	var c Committed
	if err := peer.call(ctx, http.MethodPost, "/"+id+"/commit", nil, &c); err != nil {
		return res, err
	}
	done()
	res.Downtime = time.Since(freezeStart)
	res.Info = c.Info
	res.Assemble = time.Duration(c.AssembleMillis) * time.Millisecond
	res.Restore = time.Duration(c.RestoreMillis) * time.Millisecond
	res.Home = c.Home
	// The files that went are now what both machines last agreed on: a
	// later arrival here of other versions may replace them.
	if !acc.SharedHome {
		if err := s.Engine.RecordHomeSync(spec.User.Name, home, s.Engine.HomeRead(name)); err != nil {
			log.Warn("remember the user's files as synced", "app", name, "err", err)
		}
	}

	// 6. The app runs there: the frozen copy here goes. A failure now does
	// not hurt the app; it only leaves a frozen copy to clean up.
	frozen = false
	cleanup := time.Now()
	<-removed
	removedAt := time.Now()
	if suspended {
		suspended = false
		if err := s.Engine.Stop(context.WithoutCancel(ctx), name); err != nil {
			log.Warn("remove the suspended copy after handoff", "app", name, "err", err)
		}
	} else if err := s.Engine.Release(context.WithoutCancel(ctx), name); err != nil {
		log.Warn("release after handoff", "app", name, "err", err)
	}
	log.Debug("cleaned up after the handoff", "app", name, "final dump", removedAt.Sub(cleanup), "release", time.Since(removedAt))
	progress(Progress{Phase: PhaseDone})
	return res, nil
}

// sendHomeFiles sends the files of the user's home the app uses and the
// destination lacks (none when it shares the home), and returns them all
// and the bytes sent. The app is frozen: the files hold still.
func (s *Sender) sendHomeFiles(ctx context.Context, peer Peer, id, name string, m *handles.Manifest, shared bool) ([]engine.HomeFile, int64, error) {
	if shared {
		return nil, 0, nil
	}
	files, err := s.Engine.HomeFiles(ctx, name, m)
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
			if err := writeHomeEntry(tw, s.Engine, name, f); err != nil {
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
func writeHomeEntry(tw *tar.Writer, e *engine.Engine, name string, f engine.HomeFile) error {
	in, err := e.OpenHomeFile(name, f.Path)
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

// lockedPaths names the files of handles, for logs.
func lockedPaths(hs []handles.Handle) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Path)
	}
	return out
}

// Pre-copy rounds. Without the kernel's dirty-page tracking every round is
// a full dump, hashed; only pieces the destination lacks are sent. Another
// round is worth it while the last one sent enough to matter and clearly
// less than the one before (the app dirties memory more slowly than rounds
// shrink); the final round, with the app frozen, then sends the rest.
const (
	maxPreRounds = 5
	// preRoundEnough: a round that sent less leaves too little for another
	// round to save (8 MiB is 70 ms at 1 Gbit/s; a round costs a dump).
	preRoundEnough = 8 << 20
	// preRoundShrink: another round only if the last one sent at most this
	// share of the one before; otherwise the app dirties memory about as
	// fast as rounds can send it.
	preRoundShrink = 0.7
	// preRoundBusy: a first round shorter than this gives the app no time
	// to dirty much, so a second one would only cost a dump.
	preRoundBusy = time.Second
)

// preCopy runs pre-copy rounds while the app runs, starting with first, a
// dump already under way, and returns the bytes sent. The next round's dump
// starts while this round's pieces are still on the wire, timed to end about
// when they do: a round then lasts about as long as the longer of its dump
// and its transfer, not both, and the app dirties less during it.
func (s *Sender) preCopy(ctx context.Context, name string, peer Peer, id, work string, first *snapshot, sent *sentIndex, progress func(Progress), res *Result) (int64, error) {
	var total, last int64
	cur := first
	var next *snapshot
	var mu sync.Mutex // next is set from the transfer's progress reports
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if next != nil { // a failed round leaves the next dump to finish
			_ = next.wait()
			_ = os.RemoveAll(next.dir)
		}
	}()
	for round := 1; ; round++ {
		this, before := cur, last
		// Whether the app changed enough since this round's dump for
		// another round to be worth its dump: estimated once, late in the
		// round, from a sample of its memory.
		var estimate int64 = -1
		changedEnough := func() bool {
			if estimate < 0 {
				estimate = this.changed(ctx)
			}
			return estimate >= preRoundEnough
		}
		// A report can come late, once the round is over (the transport
		// reads the body to its end after the answer): it is dropped.
		over := false
		var streamed int64 // bytes of this round sent before its index
		report := func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			if over {
				return
			}
			p.Phase, p.Round = PhasePreCopy, round
			progress(p)
			if next == nil && this.isDone() && p.ETA <= this.overlappedDump() && anotherRound(round, p.Total, before, time.Since(this.start)+p.ETA) && changedEnough() {
				next = s.startSnapshot(ctx, name, filepath.Join(work, roundName(round+1)))
				next.overlapped = true
			}
		}
		if round == 1 {
			// The destination holds nothing yet: the pages go as CRIU
			// writes them, and the index round only confirms them. The
			// dump then runs beside a transfer, as later ones do.
			cur.overlapped = true
			var err error
			streamed, err = s.streamPages(ctx, peer, id, cur, report)
			total += streamed
			if err != nil {
				_ = cur.wait()
				return total, err
			}
		}
		if err := cur.wait(); err != nil {
			return total, err
		}
		res.Rounds, res.LongestPause = round, max(res.LongestPause, cur.took)
		n, err := s.sendRound(ctx, peer, id, roundName(round), cur.dir, cur.ix, sent, func(p Progress) {
			p.Bytes, p.Total = p.Bytes+streamed, p.Total+streamed
			report(p)
		})
		n += streamed
		mu.Lock()
		over = true
		mu.Unlock()
		total += n - streamed
		// Its pages are sent: deleted now, most of them never reach the
		// disk, whose writeback would otherwise slow the next dump down.
		_ = os.RemoveAll(cur.dir)
		if err != nil {
			return total, err
		}
		took := time.Since(cur.start)
		mu.Lock()
		upcoming := next
		next = nil
		more := upcoming != nil || (anotherRound(round, n, last, took) && changedEnough())
		mu.Unlock()
		s.log().Debug("pre-copy round", "app", name, "round", round, "sent", n, "dump", cur.took, "took", took,
			"changed since", estimate, "another", more, "overlapped", upcoming != nil)
		if !more {
			// The sample reads the app's memory: not while it is dumped.
			<-cur.sampled
			return total, nil
		}
		if upcoming == nil {
			upcoming = s.startSnapshot(ctx, name, filepath.Join(work, roundName(round+1)))
		}
		cur, last = upcoming, n
	}
}

// snapshot is a pre-copy dump under way.
type snapshot struct {
	dir        string
	start      time.Time
	took       time.Duration // the dump's, once done
	hashed     time.Duration // how long indexing it took, once done
	overlapped bool          // ran while a round's pieces were sent
	written    chan struct{} // closed once the dump's files are complete
	ix         *delta.Index  // the image's index, once done
	err        error
	done       chan struct{}
	// sample is a sample of the app's memory drawn right after the dump
	// (once sampled is closed), or nil: without dirty-page tracking, the
	// only way short of another dump to tell how much changed since.
	sample  *engine.MemorySample
	sampled chan struct{}
}

// samplePages is how many pages a memory sample reads (16 MB, ~10 ms): its
// estimates are within a few percent of the app's writable memory.
const samplePages = 4096

// changed estimates how many bytes of the app changed since the dump, or
// returns preRoundEnough when it cannot tell (no sample).
func (sn *snapshot) changed(ctx context.Context) int64 {
	select {
	case <-sn.sampled:
	case <-ctx.Done():
		return preRoundEnough
	}
	if sn.sample == nil {
		return preRoundEnough
	}
	return sn.sample.Changed(ctx)
}

// dumpSlowdown is how much longer a dump takes while a round's pieces are
// sent (both want the CPUs): an 800 MB app's took 0.8-0.97 s, against
// 0.42-0.5 s alone.
const dumpSlowdown = 2

// overlappedDump is how long the next dump is expected to take, hashed
// (its index is needed as soon as the link is free), started while this
// round's pieces are sent: it starts that long before they end.
func (sn *snapshot) overlappedDump() time.Duration {
	// Hashing always runs beside a transfer: it is taken as it was.
	if sn.overlapped {
		return sn.took + sn.hashed
	}
	return dumpSlowdown*sn.took + sn.hashed
}

func (s *Sender) startSnapshot(ctx context.Context, name, dir string) *snapshot {
	sn := &snapshot{dir: dir, start: time.Now(), done: make(chan struct{}), written: make(chan struct{}), sampled: make(chan struct{})}
	go func() {
		defer close(sn.done)
		err := s.Engine.Snapshot(ctx, name, dir)
		close(sn.written)
		sn.err, sn.took = err, time.Since(sn.start)
		if sn.err != nil {
			close(sn.sampled)
			return
		}
		// Drawn right after the dump, beside the round's hashing and
		// sending: what changed since the dump is what it estimates.
		go func() {
			defer close(sn.sampled)
			sample, err := s.Engine.SampleMemory(ctx, name, samplePages)
			if err != nil {
				s.log().Debug("no memory sample: rounds go by what they send", "app", name, "err", err)
				return
			}
			sn.sample = sample
		}()
		// Hashed at once: a dump started early ends before the round before
		// it has sent everything, and its index is then ready when the
		// link is free (hashing a 200 MB image takes 30-40 ms alone, more
		// beside a transfer).
		hashing := time.Now()
		sn.ix, sn.err = delta.IndexDir(dir)
		sn.hashed = time.Since(hashing)
	}()
	return sn
}

func (sn *snapshot) isDone() bool {
	select {
	case <-sn.done:
		return true
	default:
		return false
	}
}

func (sn *snapshot) wait() error {
	<-sn.done
	return sn.err
}

// anotherRound decides whether pre-copy round round, which sent sent bytes
// in took after a round that sent last, should be followed by another one.
func anotherRound(round int, sent, last int64, took time.Duration) bool {
	switch {
	case round >= maxPreRounds || sent < preRoundEnough:
		return false
	case round == 1:
		return took >= preRoundBusy
	default:
		return float64(sent) <= preRoundShrink*float64(last)
	}
}

// roundName names pre-copy round n (from 1) in the protocol.
func roundName(n int) string {
	if n == 1 {
		return "pre"
	}
	return fmt.Sprintf("pre%d", n)
}

// streamPages sends the page images of sn, a dump under way, as CRIU
// writes them, and returns the bytes sent.
func (s *Sender) streamPages(ctx context.Context, peer Peer, id string, sn *snapshot, progress func(Progress)) (int64, error) {
	pr, pw := io.Pipe()
	start := time.Now()
	go func() {
		_, err := delta.SendGrowing(ctx, pw, sn.dir, sn.written, func(sent, written int64) {
			rate := float64(sent) / max(time.Since(start).Seconds(), 1e-3)
			progress(Progress{Bytes: sent, Total: written, Rate: rate,
				ETA: time.Duration(float64(written-sent) / rate * float64(time.Second))})
		})
		pw.CloseWithError(err)
	}()
	counted := &countingReader{r: pr}
	err := peer.stream(ctx, http.MethodPut, "/"+id+"/pre/stream", counted)
	pr.Close()
	s.log().Debug("pages streamed", "bytes", counted.n, "took", time.Since(start), "err", err)
	return counted.n, err
}

// sentIndex is the index of the last round whose pieces the destination
// took: it holds every piece of it and nothing else, and the next index is
// sent as the difference from it.
type sentIndex struct {
	round   string
	ix      *delta.Index
	holding func() *delta.Holding // built in the background once sent
}

func (last *sentIndex) set(round string, ix *delta.Index) {
	*last = sentIndex{round: round, ix: ix, holding: sync.OnceValue(func() *delta.Holding { return delta.Holds(ix) })}
	// Ready before the next round needs it: that round's dump, or the
	// final one, takes longer.
	go last.holding()
}

// sendRound sends an image dir; ix is its index if it was built already,
// or nil. The first round sends its index and the destination answers
// with what it lacks; after that this side knows what it holds (the last
// round's pieces), and sends the index and the missing pieces at once.
func (s *Sender) sendRound(ctx context.Context, peer Peer, id, round, dir string, ix *delta.Index, last *sentIndex, progress func(Progress)) (int64, error) {
	t0 := time.Now()
	var err error
	if ix == nil {
		if ix, err = delta.IndexDir(dir); err != nil {
			return 0, err
		}
	}
	hashed := time.Now()
	var miss MissingPieces
	var header []byte
	path := "/" + id + "/" + round
	if last.ix == nil {
		body, err := ix.MarshalBinary()
		if err != nil {
			return 0, err
		}
		if err := peer.exchange(ctx, http.MethodPost, path+"/index", body, &miss); err != nil {
			return 0, err
		}
		path += "/pieces"
	} else {
		miss.Pieces = last.holding().Missing(ix)
		if miss.Bytes, err = ix.Size(miss.Pieces); err != nil {
			return 0, err
		}
		if header, err = deltaHeader(ix.MarshalBinaryDiff(last.ix), miss.Pieces); err != nil {
			return 0, err
		}
		path += "/delta?base=" + last.round
	}
	defer func(asked time.Time) {
		s.log().Debug("round timings", "round", round, "hash", hashed.Sub(t0), "index", asked.Sub(hashed), "pieces", time.Since(asked))
	}(time.Now())
	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write(header); err != nil {
			pw.CloseWithError(err)
			return
		}
		_, err := delta.WritePieces(pw, dir, ix, miss.Pieces)
		pw.CloseWithError(err)
	}()
	start := time.Now()
	counted := &countingReader{r: pr, report: func(n int64) {
		n = max(n-int64(len(header)), 0)
		rate := float64(n) / max(time.Since(start).Seconds(), 1e-3)
		var eta time.Duration
		if rate > 0 {
			eta = time.Duration(float64(miss.Bytes-n) / rate * float64(time.Second))
		}
		progress(Progress{Bytes: n, Total: miss.Bytes, Rate: rate, ETA: eta})
	}}
	err = peer.stream(ctx, http.MethodPut, path, counted)
	pr.Close()
	if err == nil {
		last.set(round, ix)
	}
	return counted.n, err
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// call sends a JSON request and decodes a JSON answer, within CallTimeout
// (OfferTimeout for the offer).
func (p Peer) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return p.exchange(ctx, method, path, body, out)
}

// exchange sends body as it is and decodes a JSON answer into out.
func (p Peer) exchange(ctx context.Context, method, path string, body []byte, out any) error {
	limit := CallTimeout
	if path == "/offer" {
		limit = OfferTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	resp, err := p.do(ctx, method, path, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s: bad answer to %s: %w", p.Name, path, err)
	}
	return nil
}

// Time limits. A link that dies without a reset would otherwise hold a
// frozen app for as long as TCP takes to give up.
const (
	// StallTimeout ends a transfer in which no byte moved for this long.
	StallTimeout = 15 * time.Second
	// OfferTimeout bounds the offer, which may wait for the other user.
	OfferTimeout = 3 * time.Minute
	// CallTimeout bounds every other request/answer exchange.
	CallTimeout = 60 * time.Second
)

// stream sends a body of unknown length, giving up when it stalls.
func (p Peer) stream(ctx context.Context, method, path string, body io.Reader) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(StallTimeout, func() {
		cancel(fmt.Errorf("the transfer to %s stalled for %v (link down?)", p.Name, StallTimeout))
	})
	defer stall.Stop()
	resp, err := p.do(ctx, method, path, &watchdog{r: body, t: stall})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return cause
		}
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// watchdog pushes a timer back every time bytes move.
type watchdog struct {
	r io.Reader
	t *time.Timer
}

func (w *watchdog) Read(b []byte) (int, error) {
	n, err := w.r.Read(b)
	if n > 0 {
		w.t.Reset(StallTimeout)
	}
	return n, err
}

func (p Peer) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.Base+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("lost the connection to %s: %w", p.Name, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var r Refusal
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &r) != nil || r.Error == "" {
			r.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		if path == "/offer" && resp.StatusCode == http.StatusForbidden && r.Code == "" {
			r.Code = RefusedNotTrusted // the peer channel's own refusal
		}
		if r.Code != "" && path == "/offer" {
			return nil, &RefusedError{Peer: p.Name, Refusal: r}
		}
		return nil, fmt.Errorf("%s: %s", p.Name, r.Error)
	}
	return resp, nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
	last   time.Time
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.report != nil && (time.Since(c.last) > 100*time.Millisecond || errors.Is(err, io.EOF)) {
		c.last = time.Now()
		c.report(c.n)
	}
	return n, err
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
