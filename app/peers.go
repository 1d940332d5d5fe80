package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
)

// DefaultPeerPort is where the peer channel listens.
const DefaultPeerPort = 7466

// Peer-channel paths.
const (
	peerHandoffPrefix = "/peer/v1/handoff"
	peerBringBack     = "/peer/v1/bring-back"
)

// PeerView is a peer as the local API shows it: what discovery saw plus
// whether the user trusts it.
type PeerView struct {
	discovery.Peer
	Trusted    bool `json:"trusted"`
	AutoAccept bool `json:"auto_accept,omitempty"`
	// Saved lists the saved addresses (`handoff peers add`) where this
	// device answered last.
	Saved []string `json:"saved,omitempty"`
}

// Identity is the answer to GET /v0/id.
type Identity struct {
	ID    discovery.DeviceID `json:"id"`
	Short string             `json:"short"`
	Name  string             `json:"name"`
	Port  int                `json:"port"`
}

// TrustRequest is the body of POST /v0/peers/{id}/trust.
type TrustRequest struct {
	Name       string `json:"name"`
	AutoAccept bool   `json:"auto_accept"`
}

// SendRequest is the body of POST /v0/apps/{name}/send.
type SendRequest struct {
	Peer string `json:"peer"` // name, device ID or short ID
}

// HandoffRequest is an incoming handoff waiting for the user's answer.
type HandoffRequest struct {
	ID     string             `json:"id"`
	Kind   string             `json:"kind"`           // "handoff", "pair", or "pair-cancelled"
	Code   string             `json:"code,omitempty"` // pairing: compare with the other screen
	App    string             `json:"app,omitempty"`
	User   string             `json:"user,omitempty"` // whose app it is: only they (and root) answer
	From   string             `json:"from"`
	FromID discovery.DeviceID `json:"from_id"`
	Since  time.Time          `json:"since"`
}

// RemoteApp is an app this device handed to a peer.
type RemoteApp struct {
	Name     string             `json:"name"`
	User     string             `json:"user"` // whose app it is
	PeerID   discovery.DeviceID `json:"peer_id"`
	PeerName string             `json:"peer_name"`
	Since    time.Time          `json:"since"`
}

// HandoffEvent reports a handoff in progress (event type "handoff").
type HandoffEvent struct {
	App       string        `json:"app"`
	User      string        `json:"user,omitempty"` // whose app it is
	Peer      string        `json:"peer"`
	PeerID    string        `json:"peer_id,omitempty"`
	Direction string        `json:"direction"` // "out" or "in"
	Phase     string        `json:"phase"`
	Round     int           `json:"round,omitempty"` // pre-copy round, from 1
	Bytes     int64         `json:"bytes,omitempty"`
	Total     int64         `json:"total,omitempty"`
	Rate      float64       `json:"rate,omitempty"`
	ETA       time.Duration `json:"eta,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// peers is the daemon's half that deals with other devices.
type peers struct {
	d        *Daemon
	id       *discovery.Identity
	trust    *discovery.TrustStore
	disc     *discovery.Discovery
	srv      *http.Server
	port     int
	receiver *migration.Receiver
	sender   *migration.Sender

	history   *history
	responder *discovery.Responder

	mu       sync.Mutex
	requests map[string]*pendingRequest
	remote   map[string]RemoteApp
	// received: apps running here that a peer handed over, and which
	// peer; only that peer may bring them back or view them.
	received map[string]ReceivedApp
	// arriving: handoffs accepted and under way, by app name.
	arriving map[string]arrival
	outgoing map[discovery.DeviceID]*outgoingPair
	incoming map[string]*incomingPair // pairing sessions by ID
}

// ReceivedApp is an app a peer handed to this device.
type ReceivedApp struct {
	Name     string             `json:"name"`
	PeerID   discovery.DeviceID `json:"peer_id"`
	PeerName string             `json:"peer_name"`
	Since    time.Time          `json:"since"`
}

// arrival is an accepted incoming handoff: which device sends it.
type arrival struct {
	from    discovery.DeviceID
	name    string
	started time.Time
}

type pendingRequest struct {
	HandoffRequest
	answer chan bool
}

func (d *Daemon) startPeers(cfg DaemonConfig) error {
	id, err := discovery.LoadOrCreateIdentity(filepath.Join(cfg.StateDir, "identity"), cfg.Name)
	if err != nil {
		return err
	}
	trust, err := discovery.OpenTrustStore(filepath.Join(cfg.StateDir, "trust.json"))
	if err != nil {
		return err
	}
	work := filepath.Join(cfg.StateDir, "transfers")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	// What a crashed daemon was receiving is useless now.
	if ents, _ := os.ReadDir(work); len(ents) > 0 {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(work, e.Name()))
		}
	}
	p := &peers{d: d, id: id, trust: trust, requests: map[string]*pendingRequest{}, remote: map[string]RemoteApp{},
		received: map[string]ReceivedApp{}, arriving: map[string]arrival{},
		outgoing: map[discovery.DeviceID]*outgoingPair{}, incoming: map[string]*incomingPair{},
		history: openHistory(cfg.StateDir), responder: &discovery.Responder{Self: id.ID}}
	p.loadRemote()
	p.loadReceived()
	plat, err := migration.LocalPlatform()
	if err != nil {
		d.log.Warn("peers cannot tell whether this machine runs their apps: it refuses handoffs", "err", err)
	}
	if platformHook != nil {
		platformHook(&plat)
	}
	journal, err := migration.OpenJournal(filepath.Join(cfg.StateDir, "handoffs"))
	if err != nil {
		return err
	}
	p.receiver = &migration.Receiver{Engine: d.engine, Name: id.Name, Platform: &plat, WorkDir: work, Accept: p.accept, Log: d.log,
		Journal: journal,
		PeerID: func(ctx context.Context) string {
			from, _ := discovery.RequestPeer(ctx)
			return from.String()
		},
		Received: func(o migration.Offer, c migration.Committed) {
			p.arrived(o.Spec.Name)
			p.history.add(HandoffRecord{App: o.Spec.Name, Direction: "in", Peer: o.From, Started: time.Now().UTC(),
				Finished: time.Now().UTC(), Outcome: "done", PhasesMS: map[string]int64{"assemble": c.AssembleMillis, "restore": c.RestoreMillis}})
			p.tellKept(o.Spec.Name, o.Spec.User.Name, o.From, c.Home, "in")
		},
		PeerName: func(ctx context.Context) string {
			from, _ := discovery.RequestPeer(ctx)
			t, _ := p.trust.Get(from)
			return t.Name
		},
		Progress: func(o migration.Offer, phase string, err error) {
			ev := HandoffEvent{App: o.Spec.Name, User: o.Spec.User.Name, Peer: o.From, Direction: "in", Phase: phase}
			if err != nil {
				ev.Error = err.Error()
			}
			if phase == migration.PhaseRollback {
				p.mu.Lock()
				delete(p.arriving, o.Spec.Name)
				p.mu.Unlock()
			}
			d.events.publish(Event{Type: EventHandoff, Handoff: &ev, User: ev.User})
		}}
	p.sender = &migration.Sender{Engine: d.engine, From: id.Name, WorkDir: work, Log: d.log, Journal: journal,
		Reach: p.reach, Ended: p.sendEnded}

	mux := http.NewServeMux()
	mux.Handle(peerHandoffPrefix+"/", http.StripPrefix(peerHandoffPrefix, p.receiver))
	mux.HandleFunc("POST "+peerBringBack, p.serveBringBack)
	mux.HandleFunc("POST "+peerView+"{name}", p.serveView)
	mux.HandleFunc("POST "+peerPairCommit, p.servePairCommit)
	mux.HandleFunc("POST "+peerPairReveal, p.servePairReveal)
	mux.HandleFunc("POST "+peerPairFinish, p.servePairFinish)
	mux.HandleFunc("POST "+discovery.HelloPath, func(w http.ResponseWriter, r *http.Request) { p.disc.ServeHello(w, r) })
	p.srv = id.PeerServer(mux, trust, isOpenPath)
	listen := cfg.PeerListen
	if listen == "" {
		listen = fmt.Sprintf(":%d", DefaultPeerPort)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen for peers on %s: %w (another daemon? pick one with --listen)", listen, err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	criu := ""
	if info, err := d.engine.Criu(context.Background()); err == nil {
		criu = info.VersionString()
	}
	// Without mDNS the table still holds the peers found by address.
	p.disc, err = discovery.Start(discovery.Config{
		Self: discovery.Announcement{ID: id.ID, Version: discovery.ProtocolVersion, Name: id.Name, Arch: runtime.GOARCH, Criu: criu},
		Port: p.port, Logger: d.log, Verify: id.VerifyPeer, Trusted: trust.IsTrusted,
		NoMDNS: cfg.NoDiscovery, Hello: id.SayHello, DefaultPort: DefaultPeerPort,
		AddressFile: filepath.Join(cfg.StateDir, "peer-addresses.json"),
		OnChange: func(peer discovery.Peer, kind string) {
			v := p.view(peer)
			d.events.publish(Event{Type: EventPeer, Peer: &v, Change: kind})
		},
	})
	if err != nil {
		ln.Close()
		return err
	}
	go func() { // hellos need p.disc: served from now on
		if err := discovery.ServePeers(p.srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("peer channel stopped", "err", err)
		}
	}()
	d.peers = p
	// Handoffs the daemon stopped in: settled now (the receiver's first,
	// so that a peer asking how one ended gets the right answer).
	p.receiver.Recover()
	p.sender.Recover(context.Background())
	d.log.Info("peer channel ready", "id", id.ID.Short(), "name", id.Name, "port", p.port)
	return nil
}

// reach finds a device by its ID now, for the sender to ask it how a
// handoff ended.
func (p *peers) reach(ctx context.Context, device string) (migration.Peer, error) {
	v, err := p.find(device)
	if err != nil {
		return migration.Peer{}, err
	}
	return p.migrationPeer(v), nil
}

func (p *peers) migrationPeer(v PeerView) migration.Peer {
	return migration.Peer{HTTP: p.id.Client(v.ID), Base: "https://" + v.Endpoint() + peerHandoffPrefix, Name: v.Name, ID: v.ID.String()}
}

// sendEnded hears how a handoff of an app from here ended: one that went
// is remembered as running there (before the end is announced: a client
// told "done" may bring it back at once); one whose end came late is
// announced here, as no Send is left to do it.
func (p *peers) sendEnded(e migration.Entry, how migration.OutState, late bool) {
	if how == migration.OutDone {
		id, _ := discovery.ParseDeviceID(e.Peer)
		p.mu.Lock()
		p.remote[e.App] = RemoteApp{Name: e.App, User: e.User, PeerID: id, PeerName: e.PeerName, Since: time.Now().UTC()}
		p.mu.Unlock()
		p.saveRemote()
	}
	if !late {
		return
	}
	ev := HandoffEvent{App: e.App, User: e.User, Peer: e.PeerName, PeerID: e.Peer, Direction: "out", Phase: migration.PhaseDone}
	if how == migration.OutRolledBack {
		ev.Phase, ev.Error = migration.PhaseRollback, e.PeerName+" did not take it: it runs here again"
	}
	p.d.events.publish(Event{Type: EventHandoff, Handoff: &ev, User: ev.User})
}

// platformHook, when set (by tests only), changes what this daemon's
// receiver believes of its own CPU and kernel: the refusal path can be
// tested with the source's real features on one machine.
var platformHook func(*migration.Platform)

func (p *peers) close() {
	p.sender.Close()
	p.disc.Close()
	p.srv.Close()
}

func (p *peers) view(peer discovery.Peer) PeerView {
	v := PeerView{Peer: peer}
	if p.disc != nil { // nil only in tests of the API's rules
		v.Saved = p.disc.Saved(peer.ID)
	}
	if t, ok := p.trust.Get(peer.ID); ok {
		v.Trusted, v.AutoAccept = true, t.AutoAccept
		if v.Name == "" {
			v.Name = t.Name
		}
	}
	return v
}

// viewOf is the view of device id as the table has it now, or offline
// under name.
func (p *peers) viewOf(id discovery.DeviceID, name string) PeerView {
	if peer, ok := p.disc.Peer(id); ok {
		return p.view(peer)
	}
	return p.view(discovery.Peer{ID: id, Name: name})
}

// list shows peers seen on the network, then trusted peers and those of
// saved addresses that are not seen now.
func (p *peers) list() []PeerView {
	var out []PeerView
	seen := map[discovery.DeviceID]bool{}
	var saved []discovery.AddressState
	if p.disc != nil { // nil only in tests of the API's rules
		for _, peer := range p.disc.Peers() {
			seen[peer.ID] = true
			out = append(out, p.view(peer))
		}
		saved = p.disc.Addresses()
	}
	for _, t := range p.trust.List() {
		if !seen[t.ID] {
			seen[t.ID] = true
			out = append(out, p.view(discovery.Peer{ID: t.ID, Name: t.Name}))
		}
	}
	for _, a := range saved {
		if !a.ID.IsZero() && !seen[a.ID] {
			seen[a.ID] = true
			out = append(out, p.view(discovery.Peer{ID: a.ID, Name: a.Name, LastSeen: a.LastSeen}))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Online && !out[j].Online })
	return out
}

// ErrNoPeer is returned when no usable peer matches a name.
var ErrNoPeer = errors.New("no such peer")

// find resolves a peer by name, device ID or short ID among online peers.
func (p *peers) find(name string) (PeerView, error) {
	want, idErr := discovery.ParseDeviceID(name)
	var matches []PeerView
	for _, v := range p.list() {
		if (idErr == nil && v.ID == want) || strings.EqualFold(v.Name, name) || strings.EqualFold(v.ID.Short(), name) {
			matches = append(matches, v)
		}
	}
	switch {
	case len(matches) == 0:
		return PeerView{}, fmt.Errorf("%w %q on the network; `handoff peers` lists them", ErrNoPeer, name)
	case len(matches) > 1:
		return PeerView{}, fmt.Errorf("%q names %d devices; use its device ID", name, len(matches))
	}
	v := matches[0]
	switch {
	case v.Impostor:
		return v, fmt.Errorf("%s announces a device ID its certificate does not have; refusing to talk to it", v.Name)
	case !v.Trusted:
		return v, fmt.Errorf("%s is not trusted; `sudo handoff trust %s` or `handoff pair %s` first", v.Name, v.ID, v.Name)
	case !v.Online || v.Endpoint() == "":
		return v, fmt.Errorf("%s is offline", v.Name)
	}
	return v, nil
}

// send hands app name to the named peer.
func (p *peers) send(ctx context.Context, name, to string) (migration.Result, error) {
	v, err := p.find(to)
	if err != nil {
		return migration.Result{}, err
	}
	spec, err := p.d.engine.Spec(name)
	if err != nil {
		return migration.Result{}, err
	}
	if spec.User.IsRoot() {
		return migration.Result{}, fmt.Errorf("send %q: %w", name, engine.ErrRootApp)
	}
	ev := HandoffEvent{App: name, User: spec.User.Name, Peer: v.Name, PeerID: v.ID.String(), Direction: "out"}
	started := time.Now()
	ended := false // the handoff's own report of its end went out
	res, err := p.sender.Send(ctx, name, p.migrationPeer(v), func(pr migration.Progress) {
		ev.Phase, ev.Round, ev.Bytes, ev.Total, ev.Rate, ev.ETA, ev.Error = pr.Phase, pr.Round, pr.Bytes, pr.Total, pr.Rate, pr.ETA, pr.Error
		ended = ended || pr.Phase == migration.PhaseDone || pr.Phase == migration.PhaseRollback || pr.Phase == migration.PhaseUnknown
		e := ev
		p.d.events.publish(Event{Type: EventHandoff, Handoff: &e, User: e.User})
	})
	p.history.add(recordOf(name, "out", v.Name, started, res, err))
	if err == nil {
		p.tellKept(name, spec.User.Name, v.Name, res.Home, "out")
	}
	if err != nil {
		if !ended { // refused before it began: nothing to roll back, but say so
			ev.Phase, ev.Error = migration.PhaseRollback, err.Error()
			p.d.events.publish(Event{Type: EventHandoff, Handoff: &ev, User: ev.User})
		}
		return res, fmt.Errorf("send %q to %s: %w", name, v.Name, err)
	}
	return res, nil
}

// accept decides on an incoming handoff from a trusted peer: at once when
// the user chose auto-accept for it, else by asking the user.
func (p *peers) accept(ctx context.Context, o migration.Offer) error {
	from, _ := discovery.RequestPeer(ctx)
	t, _ := p.trust.Get(from)
	if err := p.accepting(o.Spec.Name, from, t.Name, false); err != nil {
		return err
	}
	if t.AutoAccept {
		return p.accepting(o.Spec.Name, from, t.Name, true)
	}
	// The prompt names the device as this user named it when trusting it
	// (clients show its short ID beside): what the peer calls itself in
	// its offer is only its word.
	req := &pendingRequest{HandoffRequest: HandoffRequest{
		Kind: "handoff", App: o.Spec.Name, User: o.Spec.User.Name, From: t.Name, FromID: from, Since: time.Now().UTC(),
	}, answer: make(chan bool, 1)}
	p.mu.Lock()
	req.ID = p.newRequestIDLocked(o.Spec.Name)
	p.requests[req.ID] = req
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.requests, req.ID)
		p.mu.Unlock()
	}()
	hr := req.HandoffRequest
	p.d.events.publish(Event{Type: EventRequest, Request: &hr, User: hr.User})
	select {
	case ok := <-req.answer:
		if ok {
			return p.accepting(o.Spec.Name, from, t.Name, true)
		}
		return migration.RefuseError(migration.RefusedDeclined, "the user of "+p.id.Name+" declined")
	case <-time.After(2 * time.Minute):
		return migration.RefuseError(migration.RefusedDeclined, "nobody answered on "+p.id.Name+" within 2 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *peers) answer(id string, ok bool, c caller) error {
	p.mu.Lock()
	req := p.requests[id]
	p.mu.Unlock()
	if req != nil && req.User != "" && !c.owns(req.User) {
		req = nil // another user's request: not theirs to answer
	}
	if req == nil {
		return fmt.Errorf("%w: no pending handoff request %q (`handoff requests` lists them)", engine.ErrNotFound, id)
	}
	select {
	case req.answer <- ok:
	default:
	}
	if req.Kind == "pair" { // answered: the session waits for the other side
		p.mu.Lock()
		delete(p.requests, id)
		p.mu.Unlock()
	}
	return nil
}

func (p *peers) pending() []HandoffRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []HandoffRequest{}
	for _, r := range p.requests {
		out = append(out, r.HandoffRequest)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

func (p *peers) remoteApps() []RemoteApp {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []RemoteApp{}
	for _, r := range p.remote {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// bringBack asks the peer running app name (handed off from here) to send it back.
func (p *peers) bringBack(ctx context.Context, name string, c caller) error {
	p.mu.Lock()
	r, ok := p.remote[name]
	p.mu.Unlock()
	if !ok || !c.owns(r.User) {
		return fmt.Errorf("%w: %q was not handed to another device from here", engine.ErrNotFound, name)
	}
	v, err := p.find(r.PeerID.String())
	if err != nil {
		return err
	}
	if err := p.call(ctx, v, peerBringBack, map[string]string{"app": name}, nil); err != nil {
		return fmt.Errorf("ask %s to send %q back: %w", v.Name, name, err)
	}
	return nil
}

// call posts a JSON request to a trusted peer over the pinned channel and
// decodes its JSON reply into out (when not nil).
func (p *peers) call(ctx context.Context, v PeerView, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+v.Endpoint()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.id.Client(v.ID).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(readError(resp.Body))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// serveBringBack sends an app back to the peer that handed it here.
func (p *peers) serveBringBack(w http.ResponseWriter, r *http.Request) {
	var req struct {
		App string `json:"app"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	from, _ := discovery.RequestPeer(r.Context())
	if err := p.handedBy(req.App, from); err != nil {
		writeHandedByError(w, err, "bring it back")
		return
	}
	if _, err := p.send(context.WithoutCancel(r.Context()), req.App, from.String()); err != nil {
		writeError(w, http.StatusConflict, "send_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "sent"})
}

func (p *peers) forgetRemote(name string) {
	p.mu.Lock()
	_, ok := p.remote[name]
	delete(p.remote, name)
	p.mu.Unlock()
	if ok {
		p.saveRemote()
	}
}

func (p *peers) remotePath() string { return filepath.Join(p.d.cfg.StateDir, "remote.json") }

func (p *peers) loadRemote() {
	var list []RemoteApp
	if err := readJSONFile(p.remotePath(), &list); err == nil {
		for _, r := range list {
			p.remote[r.Name] = r
		}
	}
}

func (p *peers) saveRemote() {
	if err := writeJSONFile(p.remotePath(), p.remoteApps()); err != nil {
		p.d.log.Warn("save remote apps", "err", err)
	}
}

// newRequestIDLocked returns a random request ID, unique among those
// waiting: prefix-8 hex digits.
func (p *peers) newRequestIDLocked(prefix string) string {
	for {
		id := newRequestID(prefix)
		if _, taken := p.requests[id]; !taken {
			return id
		}
	}
}

func newRequestID(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// accepting records, once an incoming handoff is accepted (commit), which
// device sends the app; before that (commit false) it refuses a second
// device's offer of an app of the same name while one is under way, so
// that what arrives is put down to the device that sent it.
func (p *peers) accepting(app string, from discovery.DeviceID, name string, commit bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.arriving[app]; ok && a.from != from && time.Since(a.started) < 30*time.Minute {
		return migration.RefuseError(migration.RefusedBusy, fmt.Sprintf("another device is handing %s an app named %q", p.id.Name, app))
	}
	if commit {
		p.arriving[app] = arrival{from: from, name: name, started: time.Now()}
	}
	return nil
}

// arrived moves an app from arriving to received, on record.
func (p *peers) arrived(app string) {
	p.mu.Lock()
	a, ok := p.arriving[app]
	delete(p.arriving, app)
	if ok {
		p.received[app] = ReceivedApp{Name: app, PeerID: a.from, PeerName: a.name, Since: time.Now().UTC()}
	}
	p.mu.Unlock()
	if ok {
		p.saveReceived()
	}
}

// handedBy says whether device from handed app name to this device (and
// so may bring it back or view it); the error says why not.
func (p *peers) handedBy(app string, from discovery.DeviceID) error {
	p.mu.Lock()
	r, ok := p.received[app]
	p.mu.Unlock()
	if ok && r.PeerID == from {
		return nil
	}
	if _, err := p.d.engine.Get(app); err != nil {
		return fmt.Errorf("%w: no app named %q runs on %s", engine.ErrNotFound, app, p.id.Name)
	}
	return fmt.Errorf("%s did not hand %q to %s", from.Short(), app, p.id.Name)
}

// forgetReceived drops the record of an app that left or ended here.
func (p *peers) forgetReceived(name string) {
	p.mu.Lock()
	_, ok := p.received[name]
	delete(p.received, name)
	p.mu.Unlock()
	if ok {
		p.saveReceived()
	}
}

func (p *peers) receivedPath() string { return filepath.Join(p.d.cfg.StateDir, "received.json") }

// loadReceived reads the record, keeping apps that are still here.
func (p *peers) loadReceived() {
	var list []ReceivedApp
	if err := readJSONFile(p.receivedPath(), &list); err != nil {
		return
	}
	for _, r := range list {
		if _, err := p.d.engine.Get(r.Name); err == nil {
			p.received[r.Name] = r
		}
	}
	if len(p.received) != len(list) {
		p.saveReceived()
	}
}

func (p *peers) saveReceived() {
	p.mu.Lock()
	list := make([]ReceivedApp, 0, len(p.received))
	for _, r := range p.received {
		list = append(list, r)
	}
	p.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if err := writeJSONFile(p.receivedPath(), list); err != nil {
		p.d.log.Warn("save received apps", "err", err)
	}
}

func writeHandedByError(w http.ResponseWriter, err error, what string) {
	if errors.Is(err, engine.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	writeError(w, http.StatusForbidden, "forbidden", err.Error()+"; only the device that handed it here may "+what)
}

// requestKind returns the kind of a pending request, or "".
func (p *peers) requestKind(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.requests[id]; r != nil {
		return r.Kind
	}
	return ""
}

// tellKept tells the app's user when some of their files were kept in two
// versions on the machine the app arrived at (see engine.PlaceHomeFiles):
// both users hear it, on either machine.
func (p *peers) tellKept(app, user, peer string, placed *engine.HomePlacement, direction string) {
	if placed == nil || len(placed.Kept) == 0 {
		return
	}
	where := "here"
	if direction == "out" {
		where = "on " + peer
	}
	var lines []string
	for _, k := range placed.Kept {
		lines = append(lines, fmt.Sprintf("%s was changed %s too: both are kept, %s's version as %q.", k.Path, where, app, k.SavedAs))
	}
	n := UserNotice{Title: fmt.Sprintf("%s: %d of your files kept in two versions", app, len(placed.Kept)), Body: strings.Join(lines, " ")}
	p.d.events.publish(Event{Type: EventNotice, Notice: &n, User: user})
	p.d.log.Info("files kept in two versions", "app", app, "user", user, "peer", peer, "kept", len(placed.Kept))
}
