package engine

import (
	"errors"
	"fmt"
	"slices"
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

// lifecycle lists, for every state, the states an app may go to from it.
// Every change of an app's state goes through it (Engine.to); keeping it in
// one table makes the lifecycle reviewable at a glance (runc's libcontainer
// does the same). Stopping ends in the app's removal.
var lifecycle = map[State][]State{
	StateStarting:   {StateRunning, StateStopping, StateExited},
	StateRunning:    {StateSuspending, StateFrozen, StateStopping, StateExited},
	StateSuspending: {StateSuspended, StateRunning},
	StateSuspended:  {StateResuming, StateStopping},
	StateResuming:   {StateRunning, StateSuspended, StateStopping},
	StateFrozen:     {StateRunning, StateStopping, StateExited, StateSuspending},
	StateExited:     {StateStopping},
	StateStopping:   nil,
}

// ops lists, for every operation, the states it may start from and the
// state it moves the app into; each such move is one of the lifecycle's
// (TestLifecycleTable checks that the two tables agree).
var ops = map[string]struct {
	from []State
	to   State
}{
	"suspend": {[]State{StateRunning}, StateSuspending},
	"resume":  {[]State{StateSuspended}, StateResuming},
	"stop":    {[]State{StateStarting, StateRunning, StateSuspended, StateFrozen, StateExited}, StateStopping},
	"freeze":  {[]State{StateRunning}, StateFrozen},
	"thaw":    {[]State{StateFrozen}, StateRunning},
	"release": {[]State{StateFrozen}, StateStopping},
	// A frozen app whose final image is complete becomes a suspended one
	// (see SuspendFrozen).
	"suspend frozen": {[]State{StateFrozen}, StateSuspending},
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
	case e.State == StateFrozen:
		hint = "; it is frozen for a handoff"
	}
	return fmt.Sprintf("cannot %s %q while it is %s%s", e.Op, e.App, e.State, hint)
}

func (e *StateError) Unwrap() error { return ErrWrongState }

// mayMove reports whether the lifecycle lets an app go from one state to
// another.
func mayMove(from, to State) bool { return slices.Contains(lifecycle[from], to) }

// checkTransition returns the state op moves an app in state cur into, or a
// *StateError (wrapping ErrBusy while another operation runs).
func checkTransition(app, op string, cur State) (State, error) {
	o, ok := ops[op]
	if !ok {
		return "", fmt.Errorf("unknown operation %q", op)
	}
	if slices.Contains(o.from, cur) && mayMove(cur, o.to) {
		return o.to, nil
	}
	if cur == StateSuspending || cur == StateResuming || cur == StateStopping || cur == StateStarting {
		return "", fmt.Errorf("%s %q: %w (it is %s)", op, app, ErrBusy, cur)
	}
	return "", &StateError{App: app, Op: op, State: cur}
}
