package migration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Journal keeps the state of every handoff this machine takes part in, one
// small file each, so that a daemon that crashed or restarted mid-handoff
// resumes or resolves it (see Recover). The states a restart must know are
// written with fsync before the side acts on them.
type Journal struct {
	dir string
	mu  sync.Mutex
}

// Entry is one handoff as the journal keeps it.
type Entry struct {
	ID       string    `json:"id"`
	Role     string    `json:"role"` // "out": this machine sends; "in": it receives
	App      string    `json:"app"`
	User     string    `json:"user,omitempty"`
	Peer     string    `json:"peer"` // the other device's ID
	PeerName string    `json:"peer_name,omitempty"`
	Out      OutState  `json:"out,omitempty"`
	In       InState   `json:"in,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
}

// OpenJournal opens (making it) the journal in dir.
func OpenJournal(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("handoff journal: %w", err)
	}
	return &Journal{dir: dir}, nil
}

var entryID = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

func (j *Journal) path(role, id string) string {
	return filepath.Join(j.dir, role+"-"+id+".json")
}

// put records e; with sync, the record is on disk before put returns.
func (j *Journal) put(e Entry, sync bool) error {
	if !entryID.MatchString(e.ID) || (e.Role != "out" && e.Role != "in") {
		return fmt.Errorf("handoff journal: bad entry %q/%q", e.Role, e.ID)
	}
	e.Updated = time.Now().UTC()
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.path(e.Role, e.ID)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil && sync {
		err = syncDir(j.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("handoff journal: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// get returns the entry of role with id.
func (j *Journal) get(role, id string) (Entry, bool) {
	if !entryID.MatchString(id) {
		return Entry{}, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var e Entry
	data, err := os.ReadFile(j.path(role, id))
	if err != nil || json.Unmarshal(data, &e) != nil {
		return Entry{}, false
	}
	return e, true
}

// remove forgets a handoff.
func (j *Journal) remove(role, id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := os.Remove(j.path(role, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
}

// Entries lists the handoffs of role, oldest first.
func (j *Journal) Entries(role string) []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(j.dir, role+"-*.json"))
	var out []Entry
	for _, f := range files {
		var e Entry
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &e) == nil && e.Role == role {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out
}

// fenceFor is how long the destination remembers a handoff it aborted,
// refusing a commit that arrives that late.
const fenceFor = 24 * time.Hour
