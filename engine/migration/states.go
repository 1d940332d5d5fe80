package migration

import (
	"errors"
	"fmt"
	"slices"
)

// A handoff is a transaction between two machines. Each side keeps its own
// typed state and may only move along its table below; every state that
// matters after a crash is written to the journal before the side acts on
// it. The rule the tables encode: an app never runs on both machines, and
// is never lost. The source's frozen copy is the app until the destination
// has said, in so many words, either "it runs here" or "it does not run
// here and never will" — whatever happens to the link, or to either daemon,
// in between.

// OutState is where a handoff stands on the source.
type OutState string

const (
	OutOffered    OutState = "offered"    // the destination took the offer
	OutSyncing    OutState = "syncing"    // handles and files compared
	OutPreCopy    OutState = "pre-copy"   // memory copied while the app runs
	OutFrozen     OutState = "frozen"     // the app is stopped here
	OutFinal      OutState = "final"      // the last pages, the user's files, the upper dir
	OutCommitting OutState = "committing" // the destination was asked to restore: no thaw on our own from here
	OutUnknown    OutState = "unknown"    // the answer to the commit was lost: asking the destination
	OutDone       OutState = "done"       // it runs on the destination; the copy here is gone
	OutRolledBack OutState = "rolled-back"
)

// outTable lists where each source state may go.
var outTable = map[OutState][]OutState{
	OutOffered:    {OutSyncing, OutRolledBack},
	OutSyncing:    {OutPreCopy, OutRolledBack},
	OutPreCopy:    {OutFrozen, OutRolledBack},
	OutFrozen:     {OutFinal, OutRolledBack},
	OutFinal:      {OutCommitting, OutRolledBack},
	OutCommitting: {OutDone, OutRolledBack, OutUnknown},
	OutUnknown:    {OutDone, OutRolledBack},
	OutDone:       nil,
	OutRolledBack: nil,
}

// Final reports whether the handoff is over on this side.
func (s OutState) Final() bool { return s == OutDone || s == OutRolledBack }

// mayThaw reports whether the source may thaw its frozen copy on its own
// in state s: only before it asked the destination to restore it.
func (s OutState) mayThaw() bool { return s != OutCommitting && s != OutUnknown && s != OutDone }

// InState is where a handoff stands on the destination.
type InState string

const (
	InOffered   InState = "offered"   // accepted; nothing restored
	InReceiving InState = "receiving" // pages, files and the upper dir arrive
	InRestoring InState = "restoring" // the source committed: restoring
	InRunning   InState = "running"   // restored and shown; the source may not know yet
	InDone      InState = "done"      // the source knows it runs here
	InAborted   InState = "aborted"   // dropped; it will never run here (fences a late commit)
)

var inTable = map[InState][]InState{
	InOffered:   {InReceiving, InRestoring, InAborted},
	InReceiving: {InRestoring, InAborted},
	InRestoring: {InRunning, InAborted},
	InRunning:   {InDone},
	InDone:      nil,
	InAborted:   nil,
}

// ErrTransition is returned for a move a table does not allow.
var ErrTransition = errors.New("illegal handoff state transition")

// TransitionError names an illegal move.
type TransitionError struct {
	Side     string // "source" or "destination"
	From, To string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("%v on the %s: from %s to %s", ErrTransition, e.Side, e.From, e.To)
}

func (e *TransitionError) Unwrap() error { return ErrTransition }

func checkOut(from, to OutState) error {
	if !slices.Contains(outTable[from], to) {
		return &TransitionError{Side: "source", From: string(from), To: string(to)}
	}
	return nil
}

func checkIn(from, to InState) error {
	if !slices.Contains(inTable[from], to) {
		return &TransitionError{Side: "destination", From: string(from), To: string(to)}
	}
	return nil
}
