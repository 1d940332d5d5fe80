package migration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/delta"
	"github.com/handoff/handoff/engine/handles"
)

// Limits a receiver enforces on what a peer sends.
const (
	maxJSONBody  = 64 << 20
	maxUpperSize = 16 << 30
	spaceMargin  = 64 << 20
	// minReserve is the least room an offer reserves: CRIU's own files
	// come on top of the app's memory.
	minReserve = 256 << 20
	// maxIncoming bounds the handoffs taken at once, offers waiting for
	// the user's answer included.
	maxIncoming = 3
)

// Receiver is the destination's side of the protocol, an http.Handler to be
// mounted on the peer channel (only trusted peers may reach it: restoring an
// image runs its code as root).
type Receiver struct {
	Engine  *engine.Engine
	Name    string             // this machine's human name, for refusals ("ws-b's CPU lacks …")
	WorkDir string             // where incoming images are staged (same filesystem as the engine's state)
	Base    string             // the root base files are checked against ("/")
	Hashes  *handles.HashCache // defaults to the engine's
	// Platform is what this machine offers apps (CPU features, kernel);
	// LocalPlatform() when nil.
	Platform *Platform
	// Accept asks whether to take an offer (e.g. by asking the user); it
	// returns a *Refusal-carrying error to refuse. Nil accepts.
	Accept func(ctx context.Context, o Offer) error
	// IdleTimeout drops a handoff that has not progressed for this long.
	IdleTimeout time.Duration
	// Received, when set, is called after an app arrived and runs.
	Received func(o Offer, c Committed)
	// Progress, when set, is told each phase an incoming handoff reaches,
	// and PhaseRollback with the reason when it ends without the app.
	Progress func(o Offer, phase string, err error)
	// PeerName, when set, names the sending device as this machine knows
	// it (not as it calls itself): for the user's files kept beside
	// another version, "notes (from ws-a).txt".
	PeerName func(ctx context.Context) string
	// PeerID, when set, gives the sending device's ID (from the peer
	// channel's TLS): every request of a handoff must come from the
	// device that offered it.
	PeerID func(ctx context.Context) string
	// Journal keeps handoffs across a restart; with it, a handoff this
	// side dropped stays fenced (a late commit is refused) and "how did
	// it end?" has an answer after a crash (see Recover).
	Journal *Journal
	Log     *slog.Logger

	once sync.Once
	mux  *http.ServeMux
	mu   sync.Mutex
	in   map[string]*incoming
	// Taken by offers from their check to their end: how many, and the
	// bytes of the work dir's free space they hold between them.
	slots    int
	reserved int64
}

type incoming struct {
	mu      sync.Mutex // one request at a time per handoff
	id, dir string
	offer   Offer
	pool    *delta.Pool
	index   map[string]*delta.Index
	missing delta.Places // of the first round, answered to its index
	upper   string
	last    time.Time
	// streamed: the first round's page images that came as they were
	// written, before its index (serveStream), or nil.
	streamed *delta.Streamed
	// The latest pre-copy image, which the next round (and at last the
	// final one) is written over. It is put together in the background
	// while the source dumps its next round; wait for assembling before
	// using it or adding to the pool.
	assembled   string
	assembledIx *delta.Index
	amu         sync.Mutex    // guards assembling: drop waits without holding mu
	assembling  chan struct{} // closed once the latest assembly ended
	assemblyErr error         // set before assembling is closed

	// restoreExpected ends the engine's ExpectRestore when the handoff ends.
	restoreExpected func()
	// reserved is the room held for this handoff's images; release
	// gives it back once what it received is removed.
	reserved int64
	release  func()

	// peer is the device that offered the handoff; smu guards state,
	// which the outcome endpoint reads without waiting for a commit in
	// progress (it holds mu for as long as the restore takes).
	peer  string
	smu   sync.Mutex
	state InState

	// The user's files: shared (the home here is the source's), listed
	// (POST home), and those sent, staged until the commit places them.
	sharedHome bool
	from       string // the sending device, as this machine names it
	home       []engine.HomeFile
	homeNeed   map[string]bool
	homeStaged string
}

// waitAssembly waits for the image being put together, if any.
func (in *incoming) waitAssembly() {
	in.amu.Lock()
	done := in.assembling
	in.amu.Unlock()
	if done != nil {
		<-done
	}
}

// assembleInBackground makes dir, described by ix, the latest pre-copy
// image, put together by assemble while the handoff goes on.
func (in *incoming) assembleInBackground(dir string, ix *delta.Index, assemble func() error) {
	in.assembled, in.assembledIx = dir, ix
	done := make(chan struct{})
	in.amu.Lock()
	in.assembling = done
	in.amu.Unlock()
	go func() {
		defer close(done)
		in.assemblyErr = assemble()
	}()
}

// assembledImage waits for the latest pre-copy image and returns it.
func (in *incoming) assembledImage() (string, *delta.Index, error) {
	in.waitAssembly()
	return in.assembled, in.assembledIx, in.assemblyErr
}

// RefuseError makes Accept refuse an offer with a code and a message.
func RefuseError(code, msg string) error { return &refusalError{Refusal{Code: code, Error: msg}} }

type refusalError struct{ r Refusal }

func (e *refusalError) Error() string { return e.r.Error }

func (rv *Receiver) init() {
	rv.once.Do(func() {
		if rv.Log == nil {
			rv.Log = slog.Default()
		}
		if rv.IdleTimeout == 0 {
			rv.IdleTimeout = 2 * time.Minute
		}
		if rv.Base == "" {
			rv.Base = "/"
		}
		if rv.Hashes == nil && rv.Engine != nil {
			rv.Hashes = rv.Engine.HashCache()
		}
		rv.in = map[string]*incoming{}
		rv.mux = http.NewServeMux()
		rv.mux.HandleFunc("POST /offer", rv.serveOffer)
		rv.mux.HandleFunc("POST /{id}/manifest", rv.with(rv.serveManifest))
		rv.mux.HandleFunc("POST /{id}/{round}/index", rv.with(rv.serveIndex))
		rv.mux.HandleFunc("PUT /{id}/{round}/pieces", rv.with(rv.servePieces))
		rv.mux.HandleFunc("PUT /{id}/pre/stream", rv.with(rv.serveStream))
		rv.mux.HandleFunc("PUT /{id}/{round}/delta", rv.with(rv.serveDelta))
		rv.mux.HandleFunc("PUT /{id}/upper", rv.with(rv.serveUpper))
		rv.mux.HandleFunc("POST /{id}/home", rv.with(rv.serveHome))
		rv.mux.HandleFunc("PUT /{id}/home/files", rv.with(rv.serveHomeFiles))
		rv.mux.HandleFunc("POST /{id}/commit", rv.with(rv.serveCommit))
		rv.mux.HandleFunc("DELETE /{id}", rv.serveDrop)
		rv.mux.HandleFunc("GET /{id}/outcome", rv.serveOutcome)
		rv.mux.HandleFunc("POST /{id}/done", rv.serveDone)
	})
}

func (rv *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rv.init()
	rv.expire()
	rv.mux.ServeHTTP(w, r)
}

// Pending reports how many handoffs are in progress.
func (rv *Receiver) Pending() int {
	rv.init()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.in)
}

func (rv *Receiver) serveOffer(w http.ResponseWriter, r *http.Request) {
	var o Offer
	if err := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody)).Decode(&o); err != nil {
		refuse(w, http.StatusBadRequest, "bad_request", "cannot read the offer: "+err.Error())
		return
	}
	release, err := rv.check(r.Context(), o)
	if err != nil {
		var rf *refusalError
		if errors.As(err, &rf) {
			status := http.StatusConflict
			switch rf.r.Code {
			case RefusedDeclined:
				status = http.StatusForbidden
			case RefusedNoSpace:
				status = http.StatusInsufficientStorage
			case RefusedBusy:
				status = http.StatusServiceUnavailable
			}
			refuse(w, status, rf.r.Code, rf.r.Error)
			return
		}
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	id := newID()
	dir := filepath.Join(rv.WorkDir, "in-"+id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		release()
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	shared := o.HomeProbe != "" && engine.SharesHome(o.Spec.User.Name, o.HomeProbe)
	from := o.From
	if rv.PeerName != nil {
		if n := rv.PeerName(r.Context()); n != "" {
			from = n
		}
	}
	in := &incoming{id: id, dir: dir, offer: o, pool: delta.NewPool(),
		index: map[string]*delta.Index{}, last: time.Now(),
		restoreExpected: rv.Engine.ExpectRestore(),
		reserved:        reservation(o), release: release, sharedHome: shared, from: from,
		peer: rv.peerID(r.Context()), state: InOffered}
	rv.journal(in, false)
	rv.mu.Lock()
	rv.in[id] = in
	rv.mu.Unlock()
	rv.Log.Info("handoff offered", "app", o.Spec.Name, "user", o.Spec.User.Name, "from", o.From, "id", id, "shared_home", shared)
	rv.progress(o, PhaseRequest, nil)
	writeJSON(w, Accepted{ID: id, SharedHome: shared})
}

// check refuses an offer that cannot work here, with the reason in words;
// one it takes holds a slot and room in the work dir until release.
func (rv *Receiver) check(ctx context.Context, o Offer) (release func(), err error) {
	if o.Version != Version {
		return nil, RefuseError(RefusedIncompatible, fmt.Sprintf("it speaks handoff protocol %d, this machine %d; update Handoff on both", o.Version, Version))
	}
	if o.Arch != runtime.GOARCH {
		return nil, RefuseError(RefusedIncompatible, fmt.Sprintf("the app was built for %s, this machine is %s", o.Arch, runtime.GOARCH))
	}
	if why := rv.platform().Incompatible(o, rv.name()); why != "" {
		return nil, RefuseError(RefusedIncompatible, why)
	}
	criu, err := rv.Engine.Criu(ctx)
	if err != nil {
		return nil, RefuseError(RefusedIncompatible, "this machine cannot restore apps: "+err.Error())
	}
	if o.Criu.Version/100 > criu.Version/100 {
		return nil, RefuseError(RefusedIncompatible, fmt.Sprintf("its CRIU %s is newer than this machine's %s", o.Criu.VersionString(), criu.VersionString()))
	}
	if _, err := rv.Engine.Get(o.Spec.Name); err == nil {
		return nil, RefuseError(RefusedExists, fmt.Sprintf("an app named %q already runs here", o.Spec.Name))
	}
	if err := rv.Engine.CanReceive(o.Spec); err != nil {
		if errors.Is(err, engine.ErrNoSuchUser) {
			return nil, RefuseError(RefusedNoUser, fmt.Sprintf("%s is %s's app, and this machine has no user %s", o.Spec.Name, o.Spec.User.Name, o.Spec.User.Name))
		}
		return nil, RefuseError(RefusedIncompatible, err.Error())
	}
	// Before asking the user: an offer waiting for an answer holds its
	// slot and its room, so two cannot both be promised the same space.
	if release, err = rv.reserve(reservation(o)); err != nil {
		return nil, err
	}
	if rv.Accept != nil {
		if err := rv.Accept(ctx, o); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// reservation is the room an offer needs: the pre-copy and the final
// image may both be here before assembly, each about the app's memory as
// its cgroup counts it, and up to half again: CRIU's image of Firefox was
// 13% larger than that, Chromium's 28% (shared memory and file pages
// first touched by another cgroup are counted there).
func reservation(o Offer) int64 {
	mem := min(max(o.MemoryBytes, 0), delta.MaxFiles*delta.MaxFileSize) // no overflow below
	return max(3*mem+spaceMargin, minReserve)
}

// reserve takes a slot and need bytes of the work dir's free space, less
// what other handoffs hold, or refuses in words.
func (rv *Receiver) reserve(need int64) (release func(), err error) {
	if err := os.MkdirAll(rv.WorkDir, 0o700); err != nil {
		return nil, err
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.slots >= maxIncoming {
		return nil, RefuseError(RefusedBusy, fmt.Sprintf("this machine is taking %d apps already; send it again once one has arrived", rv.slots))
	}
	free, err := freeBytes(rv.WorkDir)
	if err != nil {
		return nil, err
	}
	if avail := free - rv.reserved; avail < need {
		held := ""
		if rv.reserved > 0 {
			held = fmt.Sprintf(", %d MB of them held for other handoffs", rv.reserved>>20)
		}
		return nil, RefuseError(RefusedNoSpace, fmt.Sprintf("needs about %d MB free, %d MB are%s", need>>20, free>>20, held))
	}
	rv.slots++
	rv.reserved += need
	var once sync.Once
	return func() {
		once.Do(func() {
			rv.mu.Lock()
			rv.slots--
			rv.reserved -= need
			rv.mu.Unlock()
		})
	}, nil
}

// freeBytes is the room left for an unprivileged writer in dir's filesystem.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space in %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// fits refuses an image larger than the room this handoff reserved, with
// held bytes of an earlier image still here.
func (in *incoming) fits(ix *delta.Index, held int64) error {
	if size := ix.Bytes(); size+held > in.reserved {
		return fmt.Errorf("the app's image of %d MB (beside %d MB held) is larger than the %d MB its offer reserved", size>>20, held>>20, in.reserved>>20)
	}
	return nil
}

func (rv *Receiver) platform() Platform {
	if rv.Platform != nil {
		return *rv.Platform
	}
	p, _ := LocalPlatform() // unreadable: no features, which Incompatible words
	return p
}

func (rv *Receiver) name() string {
	if rv.Name == "" {
		return "this machine"
	}
	return rv.Name
}

// with finds the handoff named in the path and serialises work on it.
func (rv *Receiver) with(serve func(http.ResponseWriter, *http.Request, *incoming)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rv.mu.Lock()
		in := rv.in[r.PathValue("id")]
		rv.mu.Unlock()
		if in == nil {
			refuse(w, http.StatusNotFound, "not_found", "no such handoff (it may have timed out)")
			return
		}
		if p := rv.peerID(r.Context()); in.peer != "" && p != in.peer {
			refuse(w, http.StatusForbidden, "not_yours", "this handoff was offered by another device")
			return
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		in.last = time.Now()
		serve(w, r, in)
		in.last = time.Now()
	}
}

func (rv *Receiver) serveManifest(w http.ResponseWriter, r *http.Request, in *incoming) {
	if in.getState() == InOffered {
		_ = rv.move(in, InReceiving)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody))
	if err != nil {
		refuse(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	m, err := handles.Parse(data)
	if err != nil {
		refuse(w, http.StatusBadRequest, "bad_request", "cannot read the handles manifest: "+err.Error())
		return
	}
	t0 := time.Now()
	miss := m.Missing(handles.LocalChecker(rv.Base, rv.Hashes, rv.private()...))
	rv.Log.Debug("serve manifest", "check", time.Since(t0), "lacks", len(miss))
	writeJSON(w, MissingFiles{Files: miss})
}

// private lists the directories under Base whose files a peer's manifest
// may not ask about: the engine's state (this device's identity key, other
// apps) and the incoming handoffs.
func (rv *Receiver) private() []string {
	var out []string
	for _, dir := range []string{rv.Engine.StateDir(), rv.WorkDir} {
		abs, err := filepath.Abs(dir)
		if err != nil || dir == "" {
			continue
		}
		if rel, err := filepath.Rel(rv.Base, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			out = append(out, "/"+rel)
		}
	}
	return out
}

// validRound accepts "pre", "pre2" … "pre9" and "final".
func validRound(round string) bool {
	if round == "pre" || round == "final" {
		return true
	}
	return len(round) == 4 && strings.HasPrefix(round, "pre") && round[3] >= '2' && round[3] <= '9'
}

// serveIndex takes the first round's index and answers with the places of
// the pieces this side lacks: those that did not stream in whole (or all of
// them, without a stream). Later rounds come as one request (serveDelta).
func (rv *Receiver) serveIndex(w http.ResponseWriter, r *http.Request, in *incoming) {
	const round = "pre"
	if r.PathValue("round") != round || in.index[round] != nil {
		refuse(w, http.StatusConflict, "out_of_order", "only the first round sends its index alone")
		return
	}
	t0 := time.Now()
	defer func() { rv.Log.Debug("serve index", "round", round, "took", time.Since(t0)) }()
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody))
	var ix delta.Index
	if err == nil {
		err = ix.UnmarshalBinary(data)
	}
	if err == nil {
		err = ix.Validate()
	}
	if err != nil {
		refuse(w, http.StatusBadRequest, "bad_request", "cannot read the index: "+err.Error())
		return
	}
	if err := in.fits(&ix, 0); err != nil {
		rv.drop(in.id, err)
		refuse(w, http.StatusInsufficientStorage, RefusedNoSpace, err.Error())
		return
	}
	in.index[round] = &ix
	miss := in.pool.Missing(&ix)
	if in.streamed != nil {
		// Only what arrived whole and unchanged at its place counts.
		if miss, err = in.pool.Adopt(filepath.Join(in.dir, round), &ix, in.streamed); err != nil {
			rv.drop(in.id, fmt.Errorf("check the streamed pages: %w", err))
			refuse(w, http.StatusInternalServerError, "internal", "check the streamed pages: "+err.Error())
			return
		}
		in.streamed = nil // its hashes served their purpose
	}
	size, err := ix.Size(miss)
	if err != nil {
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	in.missing = miss
	writeJSON(w, MissingPieces{Pieces: miss, Bytes: size})
}

// servePieces takes the first round's pieces straight into place; repeated
// pages are copied to their other places while the source dumps again.
func (rv *Receiver) servePieces(w http.ResponseWriter, r *http.Request, in *incoming) {
	const round = "pre"
	ix := in.index[round]
	if r.PathValue("round") != round || ix == nil || in.assembled != "" {
		refuse(w, http.StatusConflict, "out_of_order", "send the first round's index first")
		return
	}
	rv.progress(in.offer, PhasePreCopy, nil)
	dir := filepath.Join(in.dir, round)
	if err := in.pool.ReceiveImage(r.Body, dir, ix, in.missing); err != nil {
		rv.drop(in.id, fmt.Errorf("receive %s round: %w", round, err))
		refuse(w, http.StatusBadRequest, "corrupt", fmt.Sprintf("receive %s round: %v", round, err))
		return
	}
	in.assembleInBackground(dir, ix, func() error { return in.pool.FillImage(dir, ix) })
	w.WriteHeader(http.StatusNoContent)
}

// serveDelta takes a round after the first in one request: its index as a
// difference from the base round's, the places of the pieces the source
// found missing here, and those pieces. They are spooled (checked piece by
// piece) while the previous image is still put together; then this side
// checks they are at least what it lacks.
func (rv *Receiver) serveDelta(w http.ResponseWriter, r *http.Request, in *incoming) {
	round, base := r.PathValue("round"), r.URL.Query().Get("base")
	if !validRound(round) || round == "pre" || in.index[round] != nil || !validRound(base) || base == round || in.index[base] == nil {
		refuse(w, http.StatusConflict, "out_of_order", "the round is a difference from a round not received")
		return
	}
	phase := PhasePreCopy
	if round == "final" {
		phase = PhaseFinal
	}
	rv.progress(in.offer, phase, nil)
	body := bufio.NewReaderSize(r.Body, 1<<20)
	diff, places, err := readDeltaHeader(body, maxJSONBody)
	var ix delta.Index
	var changed delta.Places
	if err == nil {
		changed, err = ix.UnmarshalBinaryDiff(diff, in.index[base])
	}
	if err == nil {
		err = ix.Validate()
	}
	if err != nil {
		rv.drop(in.id, fmt.Errorf("read %s round: %w", round, err))
		refuse(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("read %s round: %v", round, err))
		return
	}
	// The image this one is written over stays until it is put together.
	var held int64
	if in.assembledIx != nil {
		held = in.assembledIx.Bytes()
	}
	if err := in.fits(&ix, held); err != nil {
		rv.drop(in.id, err)
		refuse(w, http.StatusInsufficientStorage, RefusedNoSpace, err.Error())
		return
	}
	batch, err := delta.ReceivePieces(body, in.dir, &ix, places)
	if err != nil {
		rv.drop(in.id, fmt.Errorf("receive %s round: %w", round, err))
		refuse(w, http.StatusBadRequest, "corrupt", fmt.Sprintf("receive %s round: %v", round, err))
		return
	}
	if _, _, err := in.assembledImage(); err != nil {
		batch.Remove()
		rv.drop(in.id, fmt.Errorf("assemble the pre-copy image: %w", err))
		refuse(w, http.StatusInternalServerError, "internal", "assemble the pre-copy image: "+err.Error())
		return
	}
	lacking, err := in.pool.MissingAmong(&ix, changed)
	if err == nil && !places.Covers(lacking) {
		err = fmt.Errorf("the source sent %d pieces but not all of the %d this side lacks; the two sides are out of step", len(places), len(lacking))
	}
	if err != nil {
		batch.Remove()
		rv.drop(in.id, fmt.Errorf("receive %s round: %w", round, err))
		refuse(w, http.StatusConflict, "out_of_step", fmt.Sprintf("receive %s round: %v", round, err))
		return
	}
	in.index[round] = &ix
	in.take(round, &ix, batch)
	w.WriteHeader(http.StatusNoContent)
}

// take adds a round's received pieces to the pool and, before the final
// round, puts that round's image together in the background.
func (in *incoming) take(round string, ix *delta.Index, batch *delta.Batch) {
	dir := filepath.Join(in.dir, round)
	base, baseIx := in.assembled, in.assembledIx
	in.pool.AddBatch(batch)
	if round != "final" {
		// Put the pre-copy image together over the previous round's while
		// the app still runs and the source dumps its next round: the
		// final image is written over it at commit, only where pages
		// changed. The pool then holds that image's pieces only.
		in.assembleInBackground(dir, ix, func() error {
			if err := in.pool.AssembleOver(dir, ix, base, baseIx); err != nil {
				return err
			}
			if err := os.RemoveAll(base); err != nil { // what is left of it: files the new image lacks
				return err
			}
			return in.pool.Rebase(dir, ix)
		})
	}
}

// serveStream takes the first round's page images as the source's dump
// writes them, before its index: they go into place, and the index then
// confirms each piece (Adopt) before anything counts as received.
func (rv *Receiver) serveStream(w http.ResponseWriter, r *http.Request, in *incoming) {
	// One stream, before the index.
	if in.index["pre"] != nil || in.assembled != "" || in.streamed != nil {
		refuse(w, http.StatusConflict, "out_of_order", "pages stream only before the first round's index")
		return
	}
	rv.progress(in.offer, PhasePreCopy, nil)
	// As much as the offer reserved.
	st, err := delta.ReceiveGrowing(r.Body, filepath.Join(in.dir, "pre"), in.reserved)
	in.streamed = st
	if err != nil {
		rv.drop(in.id, fmt.Errorf("receive the streamed pages: %w", err))
		refuse(w, http.StatusBadRequest, "corrupt", "receive the streamed pages: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rv *Receiver) serveUpper(w http.ResponseWriter, r *http.Request, in *incoming) {
	path := filepath.Join(in.dir, "upper.tar")
	f, err := os.Create(path)
	if err != nil {
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	// The offer did not say how large the app's files are: they may take
	// what is free but for the room other handoffs hold.
	limit, err := rv.roomForUpper(in)
	var n int64
	if err == nil {
		n, err = io.Copy(f, io.LimitReader(r.Body, limit+1))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = fmt.Errorf("the app's files are larger than %d MB", limit>>20)
		if limit < maxUpperSize {
			err = fmt.Errorf("no space for the app's files: they are larger than the %d MB free here", limit>>20)
		}
	}
	if err != nil {
		rv.drop(in.id, fmt.Errorf("receive upper dir: %w", err))
		refuse(w, http.StatusBadRequest, "bad_request", "receive upper dir: "+err.Error())
		return
	}
	in.upper = path
	w.WriteHeader(http.StatusNoContent)
}

// roomForUpper is how many bytes in's upper dir may take: what is free in
// the work dir less the room other handoffs hold, at most maxUpperSize.
func (rv *Receiver) roomForUpper(in *incoming) (int64, error) {
	free, err := freeBytes(rv.WorkDir)
	if err != nil {
		return 0, err
	}
	rv.mu.Lock()
	others := rv.reserved - in.reserved
	rv.mu.Unlock()
	return min(max(free-others-spaceMargin, 0), maxUpperSize), nil
}

func (rv *Receiver) serveCommit(w http.ResponseWriter, r *http.Request, in *incoming) {
	ix := in.index["final"]
	if ix == nil || in.upper == "" {
		refuse(w, http.StatusConflict, "out_of_order", "the final image and upper dir must arrive before the commit")
		return
	}
	// From here the app may run on this machine: what a restart must know
	// is on disk before anything is restored.
	if err := rv.move(in, InRestoring); err != nil {
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	start := time.Now()
	rv.progress(in.offer, PhaseRestore, nil)
	image := filepath.Join(in.dir, "image")
	base, baseIx, err := in.assembledImage()
	if err == nil {
		err = in.pool.AssembleOver(image, ix, base, baseIx)
	}
	if err != nil {
		rv.drop(in.id, fmt.Errorf("assemble the image: %w", err))
		refuse(w, http.StatusBadRequest, "corrupt", "assemble the image: "+err.Error())
		return
	}
	assembled := time.Now()
	upper, err := os.Open(in.upper)
	if err != nil {
		rv.drop(in.id, err)
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	placed, err := rv.placeHome(in, image)
	if err != nil {
		upper.Close()
		rv.drop(in.id, err)
		refuse(w, http.StatusInternalServerError, "home_files", err.Error())
		return
	}
	info, err := rv.Engine.InstantiateFrom(context.WithoutCancel(r.Context()), in.offer.Spec, upper, image,
		engine.Arrival{Handoff: in.id, From: in.peer})
	upper.Close()
	if err == nil {
		err = firstFrame(rv.Engine, info.Name)
		if err != nil {
			_ = rv.Engine.Stop(context.WithoutCancel(r.Context()), info.Name)
		}
	}
	if err != nil {
		rv.drop(in.id, fmt.Errorf("restore here failed: %w", err))
		refuse(w, http.StatusInternalServerError, "restore_failed", "restore here failed: "+err.Error())
		return
	}
	if err := rv.move(in, InRunning); err != nil {
		rv.Log.Error("journal the app's arrival", "app", info.Name, "err", err)
	}
	c := Committed{Info: info, AssembleMillis: assembled.Sub(start).Milliseconds(), RestoreMillis: time.Since(assembled).Milliseconds(), Home: placed}
	rv.Log.Info("handoff received", "app", info.Name, "from", in.offer.From, "assemble_ms", c.AssembleMillis, "restore_ms", c.RestoreMillis)
	rv.progress(in.offer, PhaseDone, nil)
	if rv.Received != nil {
		rv.Received(in.offer, c)
	}
	writeJSON(w, c)
	// Answer before removing what was received: deleting the spooled
	// rounds of an 800 MB app took half a second of the sender's downtime.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	rv.forget(in.id)
}

// maxHomeList bounds the list of the user's files a peer may send.
const maxHomeList = 10000

// serveHome takes the list of the user's files that go with the app and
// answers with those this home lacks.
func (rv *Receiver) serveHome(w http.ResponseWriter, r *http.Request, in *incoming) {
	var list HomeList
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	if err := dec.Decode(&list); err != nil || len(list.Files) > maxHomeList {
		refuse(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("cannot read the list of the user's files (%d files, at most %d): %v", len(list.Files), maxHomeList, err))
		return
	}
	in.home, in.homeNeed = list.Files, map[string]bool{}
	if in.sharedHome {
		writeJSON(w, HomeNeed{})
		return
	}
	need, err := rv.Engine.NeedHomeFiles(in.offer.Spec.User.Name, list.Files)
	if err != nil {
		rv.drop(in.id, fmt.Errorf("the user's files: %w", err))
		refuse(w, http.StatusBadRequest, "home_files", err.Error())
		return
	}
	for _, p := range need {
		in.homeNeed[p] = true
	}
	writeJSON(w, HomeNeed{Paths: need})
}

// serveHomeFiles stages the user's files this home lacked, each one
// checked against the list: its path asked for, its size, its hash.
func (rv *Receiver) serveHomeFiles(w http.ResponseWriter, r *http.Request, in *incoming) {
	dir := filepath.Join(in.dir, "home")
	if err := stageHomeFiles(r.Body, dir, in.home, in.homeNeed); err != nil {
		rv.drop(in.id, fmt.Errorf("receive the user's files: %w", err))
		refuse(w, http.StatusBadRequest, "home_files", "receive the user's files: "+err.Error())
		return
	}
	in.homeStaged = dir
	w.WriteHeader(http.StatusNoContent)
}

// placeHome puts the user's files into the home before the app is
// restored, and points the image at the version it had of any file it
// holds open that was kept beside another.
func (rv *Receiver) placeHome(in *incoming, image string) (*engine.HomePlacement, error) {
	if in.sharedHome || len(in.home) == 0 {
		return nil, nil
	}
	u := in.offer.Spec.User
	placed, err := rv.Engine.PlaceHomeFiles(u.Name, in.from, in.home, in.homeStaged)
	if err != nil {
		return nil, fmt.Errorf("put the user's files in place: %w", err)
	}
	open := map[string]bool{}
	for _, f := range in.home {
		open[f.Path] = f.Open
	}
	renames := map[string]string{}
	for _, k := range placed.Kept {
		if open[k.Path] {
			renames[path.Join(u.Home, k.Path)] = path.Join(u.Home, k.SavedAs)
		}
	}
	if err := engine.RenameImageFiles(image, renames); err != nil {
		return nil, fmt.Errorf("point the app at the files it had: %w", err)
	}
	return &placed, nil
}

// firstFrame checks that the restored app's display is there.
func firstFrame(e *engine.Engine, name string) error {
	if err := e.CheckDisplay(name); err != nil {
		return fmt.Errorf("the restored app shows no display: %w", err)
	}
	return nil
}

func (rv *Receiver) serveDrop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rv.mu.Lock()
	in := rv.in[id]
	rv.mu.Unlock()
	if in != nil {
		if p := rv.peerID(r.Context()); in.peer != "" && p != in.peer {
			refuse(w, http.StatusForbidden, "not_yours", "this handoff was offered by another device")
			return
		}
		if st := in.getState(); st == InRestoring || st == InRunning {
			refuse(w, http.StatusConflict, "committed", "the app is restored here already; ask how the handoff ended instead")
			return
		}
	}
	rv.drop(id, errors.New("the sending device called the handoff off"))
	w.WriteHeader(http.StatusNoContent)
}

// serveOutcome tells a source whose answer to the commit was lost how the
// handoff ended here. "aborted" is a promise: from the moment it is given,
// the handoff is fenced, and a commit that arrives later is refused.
func (rv *Receiver) serveOutcome(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	writeJSON(w, Outcome{State: rv.outcome(r.Context(), id)})
}

func (rv *Receiver) outcome(ctx context.Context, id string) string {
	if _, ok := rv.Engine.Arrived(id); ok {
		return OutcomeRunning
	}
	rv.mu.Lock()
	in := rv.in[id]
	rv.mu.Unlock()
	if in != nil && !rv.abortBeforeCommit(in) {
		// The commit came first: it restores, or has.
		switch in.getState() {
		case InRestoring:
			return OutcomeRestoring
		case InRunning, InDone:
			return OutcomeRunning
		}
	}
	if rv.Journal != nil {
		if e, ok := rv.Journal.get("in", id); ok {
			switch e.In {
			case InRunning, InDone:
				return OutcomeRunning // it arrived, and was stopped here since
			case InRestoring:
				return OutcomeRestoring // a restarted daemon has not settled it yet
			}
		}
	}
	// Not here, and not on its way: it never will be.
	rv.fence(id, in)
	if in != nil {
		rv.drop(id, errors.New("the sending device gave the handoff up"))
	}
	return OutcomeAborted
}

// abortBeforeCommit fences in if no commit has started on it, in one step
// with the commit's own move (under the same lock): either the commit or
// the abort wins, never both.
func (rv *Receiver) abortBeforeCommit(in *incoming) bool {
	in.smu.Lock()
	st := in.state
	if st != InOffered && st != InReceiving {
		in.smu.Unlock()
		return st == InAborted
	}
	in.state = InAborted
	in.smu.Unlock()
	rv.journal(in, true)
	return true
}

// serveDone is the source saying it knows the app runs here: the handoff
// is over on both sides.
func (rv *Receiver) serveDone(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if rv.Journal != nil {
		if e, ok := rv.Journal.get("in", id); ok && (e.In == InRunning || e.In == InDone) {
			rv.Journal.remove("in", id)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// move changes an incoming handoff's state along the table, journalling
// the states a restart must know (with fsync).
func (rv *Receiver) move(in *incoming, to InState) error {
	in.smu.Lock()
	from := in.state
	if err := checkIn(from, to); err != nil {
		in.smu.Unlock()
		return err
	}
	in.state = to
	in.smu.Unlock()
	rv.journal(in, to == InRestoring || to == InRunning || to == InAborted)
	failpointHit("in:" + string(to))
	return nil
}

func (in *incoming) getState() InState {
	in.smu.Lock()
	defer in.smu.Unlock()
	return in.state
}

func (rv *Receiver) journal(in *incoming, sync bool) {
	if rv.Journal == nil {
		return
	}
	e := Entry{ID: in.id, Role: "in", App: in.offer.Spec.Name, User: in.offer.Spec.User.Name,
		Peer: in.peer, PeerName: in.from, In: in.getState(), Started: time.Now().UTC()}
	if err := rv.Journal.put(e, sync); err != nil {
		rv.Log.Error("journal a handoff", "id", in.id, "err", err)
	}
}

// fence records that handoff id ended without the app here, for good.
func (rv *Receiver) fence(id string, in *incoming) {
	if in != nil {
		if in.getState() == InAborted {
			return
		}
		if err := rv.move(in, InAborted); err != nil {
			rv.Log.Error("fence a handoff", "id", id, "err", err)
		}
		return
	}
	if rv.Journal == nil {
		return
	}
	e, ok := rv.Journal.get("in", id)
	if !ok {
		e = Entry{ID: id, Role: "in", Started: time.Now().UTC()}
	}
	e.In = InAborted
	if err := rv.Journal.put(e, true); err != nil {
		rv.Log.Error("fence a handoff", "id", id, "err", err)
	}
}

func (rv *Receiver) peerID(ctx context.Context) string {
	if rv.PeerID == nil {
		return ""
	}
	return rv.PeerID(ctx)
}

// Recover settles, after a daemon start, the handoffs this machine was
// receiving when it stopped: one that was restoring ran or did not (the
// engine knows which app arrived by it); one still arriving is fenced (what
// it received is gone); fences older than a day are forgotten.
func (rv *Receiver) Recover() {
	rv.init()
	if rv.Journal == nil {
		return
	}
	for _, e := range rv.Journal.Entries("in") {
		switch e.In {
		case InRestoring:
			if _, ok := rv.Engine.Arrived(e.ID); ok {
				e.In = InRunning
			} else {
				e.In = InAborted
			}
			_ = rv.Journal.put(e, true)
		case InOffered, InReceiving:
			e.In = InAborted
			_ = rv.Journal.put(e, true)
		case InAborted, InRunning:
			if time.Since(e.Updated) > fenceFor {
				rv.Journal.remove("in", e.ID)
			}
		case InDone:
			rv.Journal.remove("in", e.ID)
		}
	}
}

func (rv *Receiver) progress(o Offer, phase string, err error) {
	if rv.Progress != nil {
		rv.Progress(o, phase, err)
	}
}

// drop ends a handoff without the app: it is fenced (a late commit is
// refused), and what it received is removed; failure says why.
func (rv *Receiver) drop(id string, failure error) {
	rv.mu.Lock()
	in := rv.in[id]
	rv.mu.Unlock()
	rv.fence(id, in)
	if in != nil && failure != nil {
		rv.progress(in.offer, PhaseRollback, failure)
	}
	rv.forget(id)
}

// forget removes what a handoff received, once it is over.
func (rv *Receiver) forget(id string) {
	rv.mu.Lock()
	in := rv.in[id]
	delete(rv.in, id)
	rv.mu.Unlock()
	if in != nil {
		in.restoreExpected()
		in.waitAssembly() // its files would be left behind
		if err := os.RemoveAll(in.dir); err != nil {
			rv.Log.Warn("remove incoming handoff", "id", id, "err", err)
		}
		in.release() // the room it held is free again
	}
}

// expire drops handoffs whose source went silent.
func (rv *Receiver) expire() {
	rv.mu.Lock()
	var stale []string
	for id, in := range rv.in {
		if in.mu.TryLock() {
			if st := in.getState(); time.Since(in.last) > rv.IdleTimeout && st != InRestoring && st != InRunning {
				stale = append(stale, id)
			}
			in.mu.Unlock()
		}
	}
	rv.mu.Unlock()
	for _, id := range stale {
		rv.Log.Info("dropping a handoff whose source went silent", "id", id)
		rv.drop(id, errors.New("the sending device went silent"))
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Refusal{Code: code, Error: msg})
}
