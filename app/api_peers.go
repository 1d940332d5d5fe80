package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine/migration"
)

func (h *handler) servePeersNotReady(w http.ResponseWriter) bool {
	if h.d.peers == nil {
		writeError(w, http.StatusServiceUnavailable, "no_peers", "this daemon runs without the peer channel")
		return true
	}
	return false
}

func (h *handler) serveID(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	p := h.d.peers
	writeJSON(w, http.StatusOK, Identity{ID: p.id.ID, Short: p.id.ID.Short(), Name: p.id.Name, Port: p.port})
}

func (h *handler) servePeers(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	writeJSON(w, http.StatusOK, h.d.peers.list())
}

// AddPeerRequest is the body of POST /v0/peers/addresses.
type AddPeerRequest struct {
	Address string `json:"address"` // HOST[:PORT]
}

// AddedPeer answers POST /v0/peers/addresses: the saved address, and the
// device that answered there, if one did.
type AddedPeer struct {
	Address discovery.AddressState `json:"address"`
	Peer    *PeerView              `json:"peer,omitempty"`
}

// serveAddPeer saves an address where a peer may be found. It trusts
// nothing (pairing or `trust` does), so it needs no administrator.
func (h *handler) serveAddPeer(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	var req AddPeerRequest
	if err := decodeJSON(r, &req); err != nil || req.Address == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "say which address to add: HOST or HOST:PORT")
		return
	}
	p := h.d.peers
	st, err := p.disc.AddAddress(r.Context(), req.Address)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_address", err.Error())
		return
	}
	out := AddedPeer{Address: st}
	if !st.ID.IsZero() {
		v := p.viewOf(st.ID, st.Name)
		out.Peer = &v
		h.d.events.publish(Event{Type: EventPeer, Peer: &v, Change: "saved"})
	}
	writeJSON(w, http.StatusOK, out)
}

// serveRemovePeer forgets saved addresses: by the address, or the ID or
// name of the device last found there.
func (h *handler) serveRemovePeer(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	p := h.d.peers
	gone, err := p.disc.RemoveAddress(r.URL.Query().Get("peer"))
	if errors.Is(err, discovery.ErrNoAddress) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	for _, a := range gone {
		if a.ID.IsZero() {
			continue
		}
		v, change := p.viewOf(a.ID, a.Name), discovery.PeerChanged
		if !v.Online {
			change = discovery.PeerLeft
		}
		h.d.events.publish(Event{Type: EventPeer, Peer: &v, Change: change})
	}
	writeJSON(w, http.StatusOK, gone)
}

func (h *handler) servePeerAddresses(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	writeJSON(w, http.StatusOK, h.d.peers.disc.Addresses())
}

func (h *handler) serveTrust(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	id, err := discovery.ParseDeviceID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error()+"; copy the ID from `handoff id` on that device")
		return
	}
	if !h.requireAdmin(w, r, "handoff trust "+id.String()) {
		return
	}
	var req TrustRequest
	if err := decodeJSON(r, &req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if req.Name == "" && h.d.peers.disc != nil {
		if p, ok := h.d.peers.disc.Peer(id); ok {
			req.Name = p.Name
		}
	}
	if err := h.d.peers.trust.Trust(id, req.Name, req.AutoAccept); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, h.d.peers.view(discovery.Peer{ID: id, Name: req.Name}))
}

func (h *handler) serveUntrust(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	id, err := discovery.ParseDeviceID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !h.requireAdmin(w, r, "handoff untrust "+id.String()) {
		return
	}
	if err := h.d.peers.trust.Untrust(id); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) serveSend(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	if _, ok := h.ownApp(w, r); !ok {
		return
	}
	var req SendRequest
	if err := decodeJSON(r, &req); err != nil || req.Peer == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "say which peer to send to")
		return
	}
	// The handoff runs to its end even if the client leaves: stopping half
	// way is what the rollback is for, not a closed terminal.
	res, err := h.d.peers.send(contextWithoutCancel(r), r.PathValue("name"), req.Peer)
	if err != nil {
		h.writeSendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) serveBringBack(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	c, _ := callerOf(r.Context())
	if err := h.d.peers.bringBack(contextWithoutCancel(r), r.PathValue("name"), c); err != nil {
		h.writeSendError(w, err)
		return
	}
	info, err := h.d.engine.Get(r.PathValue("name"))
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) writeSendError(w http.ResponseWriter, err error) {
	var refused *migration.RefusedError
	switch {
	case errors.Is(err, ErrNoPeer):
		writeError(w, http.StatusNotFound, "no_peer", err.Error())
	case errors.As(err, &refused):
		writeError(w, http.StatusConflict, "refused", err.Error())
	case errors.Is(err, migration.ErrOutcomeUnknown):
		writeError(w, http.StatusConflict, "outcome_unknown", err.Error())
	case errors.Is(err, migration.ErrNotPending):
		writeError(w, http.StatusConflict, "not_pending", err.Error())
	default:
		h.writeEngineError(w, err)
	}
}

// serveRunHere is the user deciding that an app whose destination cannot
// say whether it took it runs here again.
func (h *handler) serveRunHere(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	if _, ok := h.ownApp(w, r); !ok {
		return
	}
	if err := h.d.peers.sender.RunHere(r.Context(), r.PathValue("name")); err != nil {
		h.writeSendError(w, err)
		return
	}
	info, err := h.d.engine.Get(r.PathValue("name"))
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) serveRemote(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	c, _ := callerOf(r.Context())
	var mine []RemoteApp
	for _, a := range h.d.peers.remoteApps() {
		if c.owns(a.User) {
			mine = append(mine, a)
		}
	}
	writeJSON(w, http.StatusOK, append([]RemoteApp{}, mine...))
}

func (h *handler) serveRequests(w http.ResponseWriter, r *http.Request) {
	if h.servePeersNotReady(w) {
		return
	}
	c, _ := callerOf(r.Context())
	mine := []HandoffRequest{}
	for _, req := range h.d.peers.pending() {
		if req.User == "" || c.owns(req.User) {
			mine = append(mine, req)
		}
	}
	writeJSON(w, http.StatusOK, mine)
}

func (h *handler) serveAnswer(ok bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.servePeersNotReady(w) {
			return
		}
		// Accepting a pairing trusts the device: an administrator's call.
		if ok && h.d.peers.requestKind(r.PathValue("id")) == "pair" && !h.requireAdmin(w, r, "handoff accept "+r.PathValue("id")) {
			return
		}
		c, _ := callerOf(r.Context())
		if err := h.d.peers.answer(r.PathValue("id"), ok, c); err != nil {
			h.writeEngineError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func readError(r io.Reader) string {
	data, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var e apiError
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(data))
}

func readJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
