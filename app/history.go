package app

import (
	"errors"
	"path/filepath"
	"sync"
	"time"

	"github.com/handoff/handoff/engine/migration"
)

// HandoffRecord is one handoff as the daemon remembers it.
type HandoffRecord struct {
	App       string           `json:"app"`
	Direction string           `json:"direction"` // "out" or "in"
	Peer      string           `json:"peer"`
	Started   time.Time        `json:"started"`
	Finished  time.Time        `json:"finished"`
	Outcome   string           `json:"outcome"` // "done", "failed" or "refused"
	Error     string           `json:"error,omitempty"`
	PhasesMS  map[string]int64 `json:"phases_ms,omitempty"`
	Downtime  int64            `json:"downtime_ms,omitempty"`
	Bytes     int64            `json:"bytes,omitempty"`
}

// history keeps the last handoffs, persisted in the state dir.
type history struct {
	path string
	mu   sync.Mutex
	recs []HandoffRecord
}

const historyLen = 100

func openHistory(stateDir string) *history {
	h := &history{path: filepath.Join(stateDir, "handoffs.json")}
	_ = readJSONFile(h.path, &h.recs)
	return h
}

func (h *history) add(r HandoffRecord) {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	if len(h.recs) > historyLen {
		h.recs = h.recs[len(h.recs)-historyLen:]
	}
	recs := append([]HandoffRecord(nil), h.recs...)
	h.mu.Unlock()
	_ = writeJSONFile(h.path, recs)
}

func (h *history) list() []HandoffRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]HandoffRecord{}, h.recs...)
}

func recordOf(app, dir, peer string, started time.Time, res migration.Result, err error) HandoffRecord {
	r := HandoffRecord{App: app, Direction: dir, Peer: peer, Started: started.UTC(), Finished: time.Now().UTC(),
		Outcome: "done", Downtime: res.Downtime.Milliseconds(), Bytes: res.Bytes}
	if len(res.Phases) > 0 {
		r.PhasesMS = map[string]int64{}
		for k, v := range res.Phases {
			r.PhasesMS[k] = v.Milliseconds()
		}
	}
	if err != nil {
		r.Outcome, r.Error = "failed", err.Error()
		var refused *migration.RefusedError
		if errors.As(err, &refused) {
			r.Outcome = "refused"
		}
	}
	return r
}
