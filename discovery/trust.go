package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// Trusted is a peer the user trusts. Trusting a device ID pins its
// certificate: the ID is the certificate's hash.
type Trusted struct {
	ID         DeviceID  `json:"id"`
	Name       string    `json:"name"`
	Added      time.Time `json:"added"`
	AutoAccept bool      `json:"auto_accept,omitempty"` // take handoffs without asking
}

// TrustStore keeps trusted peers in a JSON file (mode 0600). It is safe for
// concurrent use.
type TrustStore struct {
	path  string
	mu    sync.Mutex
	peers map[DeviceID]Trusted
}

// OpenTrustStore loads the store at path; a missing file is an empty store.
func OpenTrustStore(path string) (*TrustStore, error) {
	ts := &TrustStore{path: path, peers: map[DeviceID]Trusted{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ts, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Trusted
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("trust store %s is damaged: %w", path, err)
	}
	for _, t := range list {
		ts.peers[t.ID] = t
	}
	return ts, nil
}

// Trust adds or updates a trusted peer.
func (ts *TrustStore) Trust(id DeviceID, name string, autoAccept bool) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.peers[id]
	if !ok {
		t = Trusted{ID: id, Added: time.Now().UTC()}
	}
	if name != "" {
		t.Name = name
	}
	t.AutoAccept = autoAccept
	ts.peers[id] = t
	return ts.saveLocked()
}

// Untrust removes a peer; removing an unknown peer is not an error.
func (ts *TrustStore) Untrust(id DeviceID) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.peers, id)
	return ts.saveLocked()
}

// Get returns a trusted peer.
func (ts *TrustStore) Get(id DeviceID) (Trusted, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.peers[id]
	return t, ok
}

// IsTrusted reports whether id is trusted.
func (ts *TrustStore) IsTrusted(id DeviceID) bool {
	_, ok := ts.Get(id)
	return ok
}

// List returns the trusted peers sorted by name.
func (ts *TrustStore) List() []Trusted {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]Trusted, 0, len(ts.peers))
	for _, t := range ts.peers {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (ts *TrustStore) saveLocked() error {
	list := make([]Trusted, 0, len(ts.peers))
	for _, t := range ts.peers {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID.String() < list[j].ID.String() })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(ts.path, append(data, '\n'), 0o600)
}
