package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/handoff/handoff/discovery"
)

const peerPair = "/peer/v1/pair"

// pairWait is how long a pairing request waits for the other user.
const pairWait = 2 * time.Minute

// PairCode is the answer to GET /v0/pair-code: what to compare on both screens.
type PairCode struct {
	Peer string             `json:"peer"`
	ID   discovery.DeviceID `json:"id"`
	Code string             `json:"code"`
}

// PairStart is the body of POST /v0/pair.
type PairStart struct {
	Peer string `json:"peer"`
	Code string `json:"code"` // the code the user confirmed
}

var pairLimiter = &discovery.RateLimiter{Max: 5, Window: time.Minute}

// pairTarget finds a peer to pair with: online and honest, trusted or not.
func (p *peers) pairTarget(name string) (PeerView, error) {
	v, err := p.find(name)
	if err != nil && (v.ID.IsZero() || v.Impostor || !v.Online) {
		return v, err
	}
	return v, nil
}

// pair asks the peer to pair, after this side's user confirmed code, and
// trusts it once the other side's user confirms too.
func (p *peers) pair(ctx context.Context, name, code string) (PeerView, error) {
	v, err := p.pairTarget(name)
	if err != nil {
		return v, err
	}
	if want := discovery.PairingCode(p.id.ID, v.ID); code != want {
		return v, fmt.Errorf("the confirmed code %q is not the code for %s (%s)", code, v.Name, want)
	}
	body, _ := json.Marshal(discovery.PairRequest{Version: discovery.ProtocolVersion, Name: p.id.Name, Code: code})
	ctx, cancel := context.WithTimeout(ctx, pairWait+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+v.Endpoint()+peerPair, bytes.NewReader(body))
	if err != nil {
		return v, err
	}
	resp, err := p.id.Client(v.ID).Do(req)
	if err != nil {
		return v, fmt.Errorf("pair with %s: %w", v.Name, err)
	}
	defer resp.Body.Close()
	var ans discovery.PairAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&ans); err != nil {
		return v, fmt.Errorf("pair with %s: bad answer (%s): %w", v.Name, resp.Status, err)
	}
	if !ans.Accepted {
		return v, fmt.Errorf("%s did not pair: %s", v.Name, ans.Reason)
	}
	if err := p.trust.Trust(v.ID, v.Name, false); err != nil {
		return v, err
	}
	return p.view(v.Peer), nil
}

// servePair is the responder: it shows the request to its user and waits.
func (p *peers) servePair(w http.ResponseWriter, r *http.Request) {
	answer := func(ans discovery.PairAnswer) {
		ans.Name = p.id.Name
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ans)
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !pairLimiter.Allow(host, time.Now()) {
		answer(discovery.PairAnswer{Reason: "too many pairing attempts from your address; wait a minute"})
		return
	}
	req, err := discovery.ParsePairRequest(r.Body)
	if err != nil {
		answer(discovery.PairAnswer{Reason: err.Error()})
		return
	}
	from, _ := discovery.RequestPeer(r.Context())
	code := discovery.PairingCode(p.id.ID, from)
	if req.Code != code {
		answer(discovery.PairAnswer{Reason: "the codes differ: someone may be in the middle; pairing refused"})
		return
	}
	if p.trust.IsTrusted(from) {
		answer(discovery.PairAnswer{Accepted: true})
		return
	}
	pr := &pendingRequest{HandoffRequest: HandoffRequest{
		ID: "pair-" + from.Short(), Kind: "pair", From: req.Name, FromID: from, Code: code, Since: time.Now().UTC(),
	}, answer: make(chan bool, 1)}
	p.mu.Lock()
	if _, busy := p.requests[pr.ID]; busy {
		p.mu.Unlock()
		answer(discovery.PairAnswer{Reason: "a pairing request from you is already waiting"})
		return
	}
	p.requests[pr.ID] = pr
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.requests, pr.ID)
		p.mu.Unlock()
	}()
	hr := pr.HandoffRequest
	p.d.events.publish(Event{Type: EventRequest, Request: &hr})
	select {
	case ok := <-pr.answer:
		if !ok {
			answer(discovery.PairAnswer{Reason: "the user of " + p.id.Name + " declined"})
			return
		}
		if err := p.trust.Trust(from, req.Name, false); err != nil {
			answer(discovery.PairAnswer{Reason: err.Error()})
			return
		}
		p.d.events.publish(Event{Type: EventPeer, Peer: &PeerView{Peer: discovery.Peer{ID: from, Name: req.Name}, Trusted: true}, Change: "paired"})
		answer(discovery.PairAnswer{Accepted: true})
	case <-time.After(pairWait):
		answer(discovery.PairAnswer{Reason: "nobody answered on " + p.id.Name + " within 2 minutes"})
	case <-r.Context().Done(): // the initiator cancelled
		hr.Kind = "pair-cancelled"
		p.d.events.publish(Event{Type: EventRequest, Request: &hr})
	}
}

func (h *handler) servePairCode(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	v, err := h.d.peers.pairTarget(r.URL.Query().Get("peer"))
	if err != nil {
		h.writeSendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PairCode{Peer: v.Name, ID: v.ID, Code: discovery.PairingCode(h.d.peers.id.ID, v.ID)})
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
	v, err := h.d.peers.pair(r.Context(), req.Peer, req.Code) // cancelled with the client
	if err != nil {
		writeError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// PairCode returns the code to compare before pairing with peer.
func (c *Client) PairCode(ctx context.Context, peer string) (PairCode, error) {
	var pc PairCode
	err := c.do(ctx, http.MethodGet, "/v0/pair-code?peer="+urlQueryEscape(peer), nil, &pc)
	return pc, err
}

// Pair pairs with peer once the user confirmed code; it returns when the
// other side's user answered.
func (c *Client) Pair(ctx context.Context, peer, code string) (PeerView, error) {
	var v PeerView
	err := c.do(ctx, http.MethodPost, "/v0/pair", PairStart{Peer: peer, Code: code}, &v)
	return v, err
}
