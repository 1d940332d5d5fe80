package migration

import (
	"errors"
	"testing"
)

// TestOutgoingTable: the source's handoff moves forward one step at a time,
// may roll back only until it asked the destination to restore, and from
// then on ends only when the destination said how.
func TestOutgoingTable(t *testing.T) {
	order := []OutState{OutOffered, OutSyncing, OutPreCopy, OutFrozen, OutFinal, OutCommitting}
	for i, from := range order[:len(order)-1] {
		if err := checkOut(from, order[i+1]); err != nil {
			t.Errorf("%s → %s refused: %v", from, order[i+1], err)
		}
		if err := checkOut(from, OutRolledBack); err != nil {
			t.Errorf("%s cannot roll back: %v", from, err)
		}
		if !from.mayThaw() {
			t.Errorf("%s may not thaw", from)
		}
		for _, skip := range order[i+2:] {
			if err := checkOut(from, skip); !errors.Is(err, ErrTransition) {
				t.Errorf("%s → %s skips a step: %v", from, skip, err)
			}
		}
	}
	for _, st := range []OutState{OutCommitting, OutUnknown} {
		if st.mayThaw() {
			t.Errorf("%s may thaw on its own", st)
		}
	}
	for _, legal := range [][2]OutState{{OutCommitting, OutDone}, {OutCommitting, OutUnknown}, {OutCommitting, OutRolledBack}, {OutUnknown, OutDone}, {OutUnknown, OutRolledBack}} {
		if err := checkOut(legal[0], legal[1]); err != nil {
			t.Errorf("%s → %s refused: %v", legal[0], legal[1], err)
		}
	}
	for _, illegal := range [][2]OutState{{OutUnknown, OutCommitting}, {OutDone, OutRolledBack}, {OutRolledBack, OutDone}, {OutFrozen, OutDone}, {OutOffered, OutUnknown}} {
		err := checkOut(illegal[0], illegal[1])
		var te *TransitionError
		if !errors.As(err, &te) || te.From != string(illegal[0]) || te.To != string(illegal[1]) {
			t.Errorf("%s → %s: %v, want a TransitionError naming both", illegal[0], illegal[1], err)
		}
	}
}

// TestIncomingTable: the destination may abort until it restores; once
// the app runs there it only ends done.
func TestIncomingTable(t *testing.T) {
	for _, legal := range [][2]InState{{InOffered, InReceiving}, {InReceiving, InRestoring}, {InRestoring, InRunning}, {InRunning, InDone},
		{InOffered, InAborted}, {InReceiving, InAborted}, {InRestoring, InAborted}} {
		if err := checkIn(legal[0], legal[1]); err != nil {
			t.Errorf("%s → %s refused: %v", legal[0], legal[1], err)
		}
	}
	for _, illegal := range [][2]InState{{InRunning, InAborted}, {InAborted, InRestoring}, {InDone, InAborted}, {InOffered, InRunning}, {InAborted, InRunning}} {
		if err := checkIn(illegal[0], illegal[1]); !errors.Is(err, ErrTransition) {
			t.Errorf("%s → %s: %v, want refused", illegal[0], illegal[1], err)
		}
	}
}
