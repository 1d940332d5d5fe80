package engine

import (
	"errors"
	"fmt"
)

// State is where an app is in its lifecycle.
type State string

const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateSuspending State = "suspending"
	StateSuspended  State = "suspended"
	StateResuming   State = "resuming"
	StateStopping   State = "stopping"
	StateExited     State = "exited" // the app ended by itself; its upper dir is kept until stop
	// StateFrozen: a handoff froze the app for its final dump; it is thawed
	// on any failure and released once the destination runs it.
	StateFrozen State = "frozen"
)

// Named errors a caller can test with errors.Is.
var (
	ErrNotFound    = errors.New("no such app")
	ErrExists      = errors.New("an app with this name already exists")
	ErrInvalidName = errors.New("invalid app name")
	ErrInvalidSpec = errors.New("invalid app spec")
	ErrWrongState  = errors.New("operation not allowed in the app's current state")
	ErrBlocked     = errors.New("the app holds a handle that cannot be checkpointed")
	ErrNoSpace     = errors.New("not enough disk space")
	ErrBadImage    = errors.New("checkpoint image is missing or corrupt")
	ErrBusy        = errors.New("another operation on this app is in progress")
)

// transitions lists, for every operation, the states it may start from and the
// state the app is in while the operation runs. Keeping it in one table makes
// the lifecycle reviewable at a glance (runc's libcontainer does the same).
var transitions = map[string]struct {
	from    []State
	through State
}{
	"suspend": {from: []State{StateRunning}, through: StateSuspending},
	"resume":  {from: []State{StateSuspended}, through: StateResuming},
	"stop":    {from: []State{StateRunning, StateSuspended, StateExited, StateStarting, StateFrozen}, through: StateStopping},
	"freeze":  {from: []State{StateRunning}, through: StateFrozen},
	// A frozen app whose final image is complete becomes a suspended one
	// (see SuspendFrozen).
	"suspend frozen": {from: []State{StateFrozen}, through: StateSuspending},
}

// StateError is returned when an operation is not allowed in the app's state.
type StateError struct {
	App, Op string
	State   State
}

func (e *StateError) Error() string {
	hint := ""
	switch {
	case e.Op == "resume" && e.State == StateRunning:
		hint = "; it is already running"
	case e.Op == "suspend" && e.State == StateSuspended:
		hint = "; it is already suspended, use `handoff resume`"
	case e.Op == "suspend" && e.State == StateExited:
		hint = "; the app has exited, use `handoff stop` to remove it"
	}
	return fmt.Sprintf("cannot %s %q while it is %s%s", e.Op, e.App, e.State, hint)
}

func (e *StateError) Unwrap() error { return ErrWrongState }

// checkTransition returns the in-progress state for op, or a *StateError.
func checkTransition(app, op string, cur State) (State, error) {
	t, ok := transitions[op]
	if !ok {
		return "", fmt.Errorf("unknown operation %q", op)
	}
	for _, s := range t.from {
		if s == cur {
			return t.through, nil
		}
	}
	if cur == StateSuspending || cur == StateResuming || cur == StateStopping || cur == StateStarting {
		return "", fmt.Errorf("%s %q: %w (it is %s)", op, app, ErrBusy, cur)
	}
	return "", &StateError{App: app, Op: op, State: cur}
}
