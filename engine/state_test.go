package engine

import (
	"errors"
	"testing"
)

// TestLifecycleTable: every operation from every state is either a move the
// table allows, or refused with an error the caller can test.
func TestLifecycleTable(t *testing.T) {
	allowed := map[string][]State{
		"suspend": {StateRunning},
		"resume":  {StateSuspended},
		"stop":    {StateStarting, StateRunning, StateSuspended, StateFrozen, StateExited},
		"freeze":  {StateRunning},
		"thaw":    {StateFrozen},
		"release": {StateFrozen},
	}
	for op, o := range ops {
		for _, from := range o.from {
			if !mayMove(from, o.to) {
				t.Errorf("%s moves %s to %s, which the lifecycle does not allow", op, from, o.to)
			}
		}
	}
	all := []State{StateStarting, StateRunning, StateSuspending, StateSuspended, StateResuming, StateStopping, StateExited, StateFrozen}
	for op, from := range allowed {
		for _, cur := range all {
			_, err := checkTransition("notes", op, cur)
			ok := false
			for _, f := range from {
				ok = ok || f == cur
			}
			if ok && err != nil {
				t.Errorf("%s from %s refused: %v", op, cur, err)
			}
			if !ok && (err == nil || !(errors.Is(err, ErrWrongState) || errors.Is(err, ErrBusy))) {
				t.Errorf("%s from %s: %v, want a refusal", op, cur, err)
			}
		}
	}
	// Nothing leaves stopping, and an illegal move names both ends.
	if mayMove(StateStopping, StateRunning) || mayMove(StateSuspended, StateRunning) || mayMove(StateExited, StateRunning) {
		t.Error("the table allows a move that skips a step")
	}
	if _, err := checkTransition("notes", "fly", StateRunning); err == nil {
		t.Error("an unknown operation was accepted")
	}
	var se *StateError
	if _, err := checkTransition("notes", "thaw", StateSuspended); !errors.As(err, &se) || se.Op != "thaw" {
		t.Errorf("thaw of a suspended app: %v", err)
	}
}
