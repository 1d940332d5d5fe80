package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/handoff/handoff/discovery"
)

// Peer-channel paths of pairing (discovery/pairing.go has the protocol).
// With the hello, they are the only ones a device that is not trusted may reach.
const (
	peerPairCommit = "/peer/v1/pair/commit"
	peerPairReveal = "/peer/v1/pair/reveal"
	peerPairFinish = "/peer/v1/pair/finish"
)

// isOpenPath says which peer-channel paths a device that is not trusted
// may reach: pairing, and the hello that tells who a device is (as mDNS
// does).
func isOpenPath(path string) bool {
	return path == peerPairCommit || path == peerPairReveal || path == peerPairFinish || path == discovery.HelloPath
}

// pairWait is how long a pairing waits for the users.
const pairWait = 2 * time.Minute

// PairCode is the answer to POST /v0/pair-code: what to compare on both screens.
type PairCode struct {
	Peer string             `json:"peer"`
	ID   discovery.DeviceID `json:"id"`
	Code string             `json:"code"`
}

// PairStart is the body of POST /v0/pair-code and POST /v0/pair.
type PairStart struct {
	Peer string `json:"peer"`
	Code string `json:"code,omitempty"` // POST /v0/pair: the code the user confirmed
}

// outgoingPair is a pairing this device started: the peer shows the same
// code, and waits for this side's user.
type outgoingPair struct {
	peer    PeerView
	session string
	code    string
	started time.Time
}

// incomingPair is a pairing another device started here: its prompt, and
// what came of it.
type incomingPair struct {
	session discovery.PairSession
	req     *pendingRequest // nil when the device is trusted already
	ended   chan struct{}   // closed when the session ends (timeout, cancel)
}

// pairTarget finds a peer to pair with: online and honest, trusted or not.
func (p *peers) pairTarget(name string) (PeerView, error) {
	v, err := p.find(name)
	if err != nil && (v.ID.IsZero() || v.Impostor || !v.Online) {
		return v, err
	}
	return v, nil
}

// pairCall posts a pairing message to v and decodes the answer into out; a
// refusal comes back as an error with the peer's reason.
func (p *peers) pairCall(ctx context.Context, v PeerView, path string, in, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+v.Endpoint()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.id.Client(v.ID).Do(req)
	if err != nil {
		return fmt.Errorf("pair with %s: %w", v.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ans discovery.PairAnswer
		if discovery.ReadPairMessage(resp.Body, &ans) == nil && ans.Reason != "" {
			return fmt.Errorf("%s refused to pair: %s", v.Name, ans.Reason)
		}
		return fmt.Errorf("pair with %s: %s", v.Name, resp.Status)
	}
	if err := discovery.ReadPairMessage(resp.Body, out); err != nil {
		return fmt.Errorf("pair with %s: %w", v.Name, err)
	}
	return nil
}

// pairStart runs the commit and reveal with the peer: both sides then know
// the code, and the peer shows it to its user. It returns the code for
// this side's user to compare.
func (p *peers) pairStart(ctx context.Context, name string) (PairCode, error) {
	v, err := p.pairTarget(name)
	if err != nil {
		return PairCode{}, err
	}
	p.pairCancel(ctx, v.ID.String()) // a new attempt replaces an old one
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	in, commit, err := discovery.NewInitiator(p.id.ID, v.ID, p.id.Name, nil)
	if err != nil {
		return PairCode{}, err
	}
	var ch discovery.PairChallenge
	if err := p.pairCall(ctx, v, peerPairCommit, commit, &ch); err != nil {
		return PairCode{}, err
	}
	code, reveal := in.Reveal(ch)
	var ans discovery.PairAnswer
	if err := p.pairCall(ctx, v, peerPairReveal, reveal, &ans); err != nil {
		return PairCode{}, err
	}
	if !ans.Accepted {
		return PairCode{}, fmt.Errorf("%s did not pair: %s", v.Name, ans.Reason)
	}
	p.mu.Lock()
	p.outgoing[v.ID] = &outgoingPair{peer: v, session: ch.Session, code: code, started: time.Now()}
	p.mu.Unlock()
	return PairCode{Peer: v.Name, ID: v.ID, Code: code}, nil
}

// takeOutgoing removes and returns the pairing in progress with v.
func (p *peers) takeOutgoing(id discovery.DeviceID) *outgoingPair {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.outgoing[id]
	delete(p.outgoing, id)
	if o != nil && time.Since(o.started) > pairWait {
		return nil
	}
	return o
}

// pair finishes the pairing with the named peer once this side's user
// confirmed code, and trusts it once the other side's user confirmed too.
func (p *peers) pair(ctx context.Context, name, code string) (PeerView, error) {
	v, err := p.pairTarget(name)
	if err != nil {
		return v, err
	}
	p.mu.Lock()
	o := p.outgoing[v.ID]
	p.mu.Unlock()
	if o == nil || time.Since(o.started) > pairWait {
		return v, fmt.Errorf("no pairing with %s in progress (it ended or timed out): start again with `handoff pair %s`", v.Name, v.Name)
	}
	if code != o.code {
		return v, fmt.Errorf("the confirmed code %q is not the code shown for %s (%s)", code, v.Name, o.code)
	}
	o = p.takeOutgoing(v.ID)
	if o == nil {
		return v, fmt.Errorf("the pairing with %s ended meanwhile: start again", v.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, pairWait+10*time.Second)
	defer cancel()
	var ans discovery.PairAnswer
	if err := p.pairCall(ctx, o.peer, peerPairFinish, discovery.PairFinish{Session: o.session, Confirmed: true}, &ans); err != nil {
		return v, err
	}
	if !ans.Accepted {
		return v, fmt.Errorf("%s did not pair: %s", v.Name, ans.Reason)
	}
	if err := p.trust.Trust(v.ID, v.Name, false); err != nil {
		return v, err
	}
	return p.view(v.Peer), nil
}

// pairCancel ends this side's pairing with the named peer, if any, and
// tells the peer, whose prompt goes away.
func (p *peers) pairCancel(ctx context.Context, name string) {
	v, err := p.pairTarget(name)
	if err != nil {
		return
	}
	o := p.takeOutgoing(v.ID)
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var ans discovery.PairAnswer
	_ = p.pairCall(ctx, o.peer, peerPairFinish, discovery.PairFinish{Session: o.session}, &ans)
}

// pairRefuse answers a pairing message with a refusal and its reason.
func pairRefuse(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, discovery.PairAnswer{Reason: reason})
}

func pairStatus(err error) int {
	switch {
	case errors.Is(err, discovery.ErrPairBusy), errors.Is(err, discovery.ErrPairLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, discovery.ErrPairSession):
		return http.StatusNotFound
	case errors.Is(err, discovery.ErrPairMismatch):
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// servePairCommit is the responder's first step: remember the commitment,
// answer with a nonce. Nobody is asked anything yet.
func (p *peers) servePairCommit(w http.ResponseWriter, r *http.Request) {
	from, _ := discovery.RequestPeer(r.Context())
	var c discovery.PairCommit
	if err := discovery.ReadPairMessage(r.Body, &c); err != nil {
		pairRefuse(w, http.StatusBadRequest, err.Error())
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ch, err := p.responder.Begin(from, host, c, time.Now())
	if err != nil {
		p.d.log.Info("pairing refused", "peer", from.Short(), "addr", host, "err", err)
		pairRefuse(w, pairStatus(err), err.Error())
		return
	}
	ch.Name = p.id.Name
	writeJSON(w, http.StatusOK, ch)
}

// servePairReveal checks the initiator's nonce and shows the code to this
// side's user; the answer waits for the initiator's finish.
func (p *peers) servePairReveal(w http.ResponseWriter, r *http.Request) {
	from, _ := discovery.RequestPeer(r.Context())
	var rv discovery.PairReveal
	if err := discovery.ReadPairMessage(r.Body, &rv); err != nil {
		pairRefuse(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := p.responder.Reveal(from, rv, time.Now())
	if err != nil {
		pairRefuse(w, pairStatus(err), err.Error())
		return
	}
	in := &incomingPair{session: s, ended: make(chan struct{})}
	if !p.trust.IsTrusted(from) {
		in.req = &pendingRequest{HandoffRequest: HandoffRequest{
			ID: newRequestID("pair"), Kind: "pair", From: s.Name,
			FromID: from, Code: s.Code, Since: time.Now().UTC(),
		}, answer: make(chan bool, 1)}
	}
	p.mu.Lock()
	p.incoming[s.ID] = in
	if in.req != nil {
		p.requests[in.req.ID] = in.req
	}
	p.mu.Unlock()
	time.AfterFunc(pairWait, func() { p.endIncoming(s.ID, true) })
	if in.req != nil {
		hr := in.req.HandoffRequest
		p.d.events.publish(Event{Type: EventRequest, Request: &hr})
	}
	writeJSON(w, http.StatusOK, discovery.PairAnswer{Accepted: true, Name: p.id.Name})
}

// endIncoming ends a pairing session here; withdraw says the prompt is
// still up and goes away unanswered.
func (p *peers) endIncoming(session string, withdraw bool) {
	p.mu.Lock()
	in := p.incoming[session]
	delete(p.incoming, session)
	if in != nil && in.req != nil {
		if _, up := p.requests[in.req.ID]; !up {
			withdraw = false // answered already
		}
		delete(p.requests, in.req.ID)
	}
	p.mu.Unlock()
	p.responder.End(session)
	if in == nil {
		return
	}
	close(in.ended)
	if withdraw && in.req != nil {
		hr := in.req.HandoffRequest
		hr.Kind = "pair-cancelled"
		p.d.events.publish(Event{Type: EventRequest, Request: &hr})
	}
}

// servePairFinish hears whether the initiator's user confirmed, and
// answers once this side's user did: each side trusts the other only when
// both users said the codes match.
func (p *peers) servePairFinish(w http.ResponseWriter, r *http.Request) {
	from, _ := discovery.RequestPeer(r.Context())
	var f discovery.PairFinish
	if err := discovery.ReadPairMessage(r.Body, &f); err != nil {
		pairRefuse(w, http.StatusBadRequest, err.Error())
		return
	}
	p.mu.Lock()
	in := p.incoming[f.Session]
	p.mu.Unlock()
	if in == nil || in.session.From != from {
		pairRefuse(w, http.StatusNotFound, discovery.ErrPairSession.Error())
		return
	}
	if !f.Confirmed {
		p.endIncoming(f.Session, true)
		writeJSON(w, http.StatusOK, discovery.PairAnswer{Name: p.id.Name, Reason: "cancelled"})
		return
	}
	if in.req == nil { // trusted already: nothing to ask
		p.endIncoming(f.Session, false)
		writeJSON(w, http.StatusOK, discovery.PairAnswer{Accepted: true, Name: p.id.Name})
		return
	}
	select {
	case ok := <-in.req.answer:
		p.endIncoming(f.Session, false)
		if !ok {
			writeJSON(w, http.StatusOK, discovery.PairAnswer{Name: p.id.Name, Reason: "the user of " + p.id.Name + " declined"})
			return
		}
		name := in.session.Name
		if err := p.trust.Trust(from, name, false); err != nil {
			writeJSON(w, http.StatusOK, discovery.PairAnswer{Name: p.id.Name, Reason: err.Error()})
			return
		}
		p.d.events.publish(Event{Type: EventPeer, Peer: &PeerView{Peer: discovery.Peer{ID: from, Name: name}, Trusted: true}, Change: "paired"})
		writeJSON(w, http.StatusOK, discovery.PairAnswer{Accepted: true, Name: p.id.Name})
	case <-in.ended:
		writeJSON(w, http.StatusOK, discovery.PairAnswer{Name: p.id.Name, Reason: "nobody answered on " + p.id.Name + " within 2 minutes"})
	case <-r.Context().Done(): // the initiator gave up
		p.endIncoming(f.Session, true)
	}
}

func (h *handler) servePairCode(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	var req PairStart
	if err := decodeJSON(r, &req); err != nil || req.Peer == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "say which device to pair with")
		return
	}
	// Asked before the other device shows anything: its user is not
	// bothered for a pairing this side may not finish.
	if !h.requireAdmin(w, r, "handoff pair "+req.Peer) {
		return
	}
	pc, err := h.d.peers.pairStart(r.Context(), req.Peer)
	if err != nil {
		h.writeSendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pc)
}

func (h *handler) servePairStart(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	var req PairStart
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !h.requireAdmin(w, r, "handoff pair "+req.Peer) {
		return
	}
	v, err := h.d.peers.pair(r.Context(), req.Peer, req.Code) // cancelled with the client
	if err != nil {
		writeError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) servePairCancel(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	h.d.peers.pairCancel(r.Context(), r.URL.Query().Get("peer"))
	w.WriteHeader(http.StatusNoContent)
}

// PairCode starts pairing with peer: both devices then show the code
// returned, which the users compare.
func (c *Client) PairCode(ctx context.Context, peer string) (PairCode, error) {
	var pc PairCode
	err := c.do(ctx, http.MethodPost, "/v0/pair-code", PairStart{Peer: peer}, &pc)
	return pc, err
}

// Pair finishes pairing with peer once the user confirmed code; it returns
// when the other side's user answered.
func (c *Client) Pair(ctx context.Context, peer, code string) (PeerView, error) {
	var v PeerView
	err := c.do(ctx, http.MethodPost, "/v0/pair", PairStart{Peer: peer, Code: code}, &v)
	return v, err
}

// PairCancel ends a pairing with peer that this device started; the other
// device's prompt goes away.
func (c *Client) PairCancel(ctx context.Context, peer string) error {
	return c.do(ctx, http.MethodDelete, "/v0/pair?peer="+urlQueryEscape(peer), nil, nil)
}
