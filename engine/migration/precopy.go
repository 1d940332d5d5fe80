package migration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/delta"
)

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
func (s *Sender) preCopy(ctx context.Context, out *engine.Outgoing, peer Peer, id, work string, first *snapshot, sent *sentIndex, progress func(Progress), res *Result) (int64, error) {
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
				next = s.startSnapshot(ctx, out, filepath.Join(work, roundName(round+1)))
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
		s.log().Debug("pre-copy round", "app", out.Name(), "round", round, "sent", n, "dump", cur.took, "took", took,
			"changed since", estimate, "another", more, "overlapped", upcoming != nil)
		if !more {
			// The sample reads the app's memory: not while it is dumped.
			<-cur.sampled
			return total, nil
		}
		if upcoming == nil {
			upcoming = s.startSnapshot(ctx, out, filepath.Join(work, roundName(round+1)))
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

func (s *Sender) startSnapshot(ctx context.Context, out *engine.Outgoing, dir string) *snapshot {
	sn := &snapshot{dir: dir, start: time.Now(), done: make(chan struct{}), written: make(chan struct{}), sampled: make(chan struct{})}
	go func() {
		defer close(sn.done)
		err := out.Snapshot(ctx, dir)
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
			sample, err := out.SampleMemory(ctx, samplePages)
			if err != nil {
				s.log().Debug("no memory sample: rounds go by what they send", "app", out.Name(), "err", err)
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
