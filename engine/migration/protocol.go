package migration

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/delta"
	"github.com/handoff/handoff/engine/handles"
)

// Version of the handoff protocol; both sides must speak the same.
// 3: pre-copy in several rounds; the network namespace is not in the image.
// 4: a later round's index travels as its difference from the round before.
// 5: missing pieces are named by their place in the index.
// 6: manifest hashes are XXH3-128.
// 7: the first round's page images stream as CRIU writes them; later
// rounds send their index and pieces in one request.
// 8: apps run as their user; the files of the user's home the app uses
// travel with it (unless both machines share the home).
// 9: the offer carries the source's CPU features; a destination refuses an
// offer without them.
const Version = 9

// Offer opens a handoff: what the source wants to hand over and what the
// destination needs to know to refuse early.
type Offer struct {
	Version     int             `json:"version"`
	Spec        engine.Spec     `json:"spec"`
	From        string          `json:"from"` // the source's human name
	Criu        engine.CriuInfo `json:"criu"`
	Arch        string          `json:"arch"`
	Kernel      string          `json:"kernel"` // uname -r
	CPU         CPU             `json:"cpu"`    // the source's CPU features (platform.go)
	MemoryBytes int64           `json:"memory_bytes"`
	// HomeProbe names a file the source left in the user's home: a
	// destination that sees it shares the home, and no file is copied
	// (engine.HomeProbe).
	HomeProbe string `json:"home_probe,omitempty"`
}

// Accepted answers an Offer.
type Accepted struct {
	ID string `json:"id"`
	// SharedHome: the destination sees the source's home probe; the
	// user's files are already there.
	SharedHome bool `json:"shared_home,omitempty"`
}

// Refusal codes: why a destination said no, before anything was frozen.
const (
	RefusedDeclined     = "declined"
	RefusedNoSpace      = "no_space"
	RefusedIncompatible = "incompatible"
	RefusedExists       = "exists"
	RefusedBusy         = "busy"
	RefusedNotTrusted   = "not_trusted"
	RefusedNoUser       = "no_user" // the app's user has no account here
)

// Refusal is the body of a non-2xx answer.
type Refusal struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// MissingFiles answers a manifest: base files the destination lacks.
type MissingFiles struct {
	Files []handles.Requirement `json:"files"`
}

// HomeList names the files of the user's home that go with the app
// (POST /{id}/home), sent once the app is frozen.
type HomeList struct {
	Files []engine.HomeFile `json:"files"`
}

// HomeNeed answers a HomeList: the files the destination's home lacks or
// has other bytes of, which the source then sends (PUT /{id}/home/files,
// a tar stream of them).
type HomeNeed struct {
	Paths []string `json:"paths"`
}

// MissingPieces answers an index: pieces the destination lacks, by their
// first place in the index.
type MissingPieces struct {
	Pieces delta.Places `json:"pieces"`
	Bytes  int64        `json:"bytes"`
}

// Committed answers a commit: the app runs on the destination.
type Committed struct {
	Info engine.Info `json:"info"`
	// AssembleMillis is how long the destination took to put the image
	// together from the pieces it received and held.
	AssembleMillis int64 `json:"assemble_ms"`
	// RestoreMillis is the destination's own part of the downtime: restore
	// start to the first frame on its display.
	RestoreMillis int64 `json:"restore_ms"`
	// Home says what became of the user's files that came with the app
	// (nil when none did, or the home is shared).
	Home *engine.HomePlacement `json:"home,omitempty"`
}

// Phases of a handoff, in order, as reported in Progress.
const (
	PhaseRequest  = "request"
	PhaseHandles  = "handles"
	PhasePreCopy  = "pre-copy"
	PhaseFreeze   = "freeze"
	PhaseFinal    = "final"
	PhaseRestore  = "restore"
	PhaseDone     = "done"
	PhaseRollback = "rollback"
	// PhaseUnknown: the answer to the commit was lost; the app stays
	// frozen at the source while it asks the destination how it ended.
	PhaseUnknown = "checking"
)

// Progress reports a handoff as it goes.
type Progress struct {
	Phase string        `json:"phase"`
	Round int           `json:"round,omitempty"` // pre-copy round, from 1
	Bytes int64         `json:"bytes"`           // sent so far in this phase
	Total int64         `json:"total"`           // to send in this phase
	Rate  float64       `json:"rate"`            // bytes per second
	ETA   time.Duration `json:"eta"`
	Error string        `json:"error,omitempty"` // why it rolled back
}

// Result records a finished handoff.
type Result struct {
	Phases   map[string]time.Duration `json:"phases"`
	Downtime time.Duration            `json:"downtime"` // freeze → running on the destination
	Bytes    int64                    `json:"bytes"`    // sent in all
	Image    int64                    `json:"image"`    // size of the final image
	Info     engine.Info              `json:"info"`     // the app on the destination
	// The destination's share of the restore phase: assembling the image,
	// then restore start → first frame.
	Assemble time.Duration `json:"assemble"`
	Restore  time.Duration `json:"restore"`
	// Pre-copy rounds, and the longest of their dumps: CRIU holds the app
	// still while it dumps, so the app stutters this long once per round.
	Rounds       int           `json:"rounds"`
	LongestPause time.Duration `json:"longest_pause"`
	// The user's files that went with the app: how many, the bytes sent,
	// whether the home was shared (then nothing was), and what the
	// destination did with them.
	HomeFiles  int                   `json:"home_files"`
	HomeBytes  int64                 `json:"home_bytes"`
	SharedHome bool                  `json:"shared_home,omitempty"`
	Home       *engine.HomePlacement `json:"home,omitempty"`
}

// A round after the first goes in one request (PUT /{id}/{round}/delta?base=R):
// the index as its binary difference from round R's, the places of the
// pieces the source found the destination to lack, then those pieces
// (delta.WritePieces). Both lead with their length (4 bytes, big-endian).
func deltaHeader(diff []byte, places delta.Places) ([]byte, error) {
	p, err := json.Marshal(places)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 8+len(diff)+len(p))
	out = binary.BigEndian.AppendUint32(out, uint32(len(diff)))
	out = append(out, diff...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
	return append(out, p...), nil
}

// readDeltaHeader reads what deltaHeader wrote, each part at most limit
// bytes. A part's buffer grows as its bytes arrive: a length alone does not
// make this side allocate it.
func readDeltaHeader(r io.Reader, limit int) (diff []byte, places delta.Places, err error) {
	frame := func() ([]byte, error) {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, err
		}
		size := binary.BigEndian.Uint32(n[:])
		if int64(size) > int64(limit) {
			return nil, fmt.Errorf("a part of %d bytes, more than %d", size, limit)
		}
		b, err := io.ReadAll(io.LimitReader(r, int64(size)))
		if err == nil && len(b) < int(size) {
			err = io.ErrUnexpectedEOF
		}
		return b, err
	}
	if diff, err = frame(); err != nil {
		return nil, nil, fmt.Errorf("read the index: %w", err)
	}
	p, err := frame()
	if err != nil {
		return nil, nil, fmt.Errorf("read the places: %w", err)
	}
	if err := json.Unmarshal(p, &places); err != nil {
		return nil, nil, fmt.Errorf("read the places: %w", err)
	}
	return diff, places, nil
}
