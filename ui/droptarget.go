package ui

// Drop targets: which peer icon a dragged app tile is over, and whether the
// app may be dropped there. Plain geometry and rules, so they are tested
// without a window.

// box is a rectangle in window coordinates.
type box struct{ X, Y, W, H float32 }

func (b box) contains(x, y float32) bool {
	return x >= b.X && y >= b.Y && x < b.X+b.W && y < b.Y+b.H
}

// dropTarget is a peer icon as a place to drop an app on.
type dropTarget struct {
	Key     string // device ID
	Name    string
	Box     box
	Online  bool
	Trusted bool
}

// targetAt returns the target under a point. Icons do not overlap; if they
// ever do, the one drawn last (on top) wins.
func targetAt(targets []dropTarget, x, y float32) (dropTarget, bool) {
	for i := len(targets) - 1; i >= 0; i-- {
		if targets[i].Box.contains(x, y) {
			return targets[i], true
		}
	}
	return dropTarget{}, false
}

// accepts says whether an app may be dropped on the target and, when not,
// what the user should do about it.
func (t dropTarget) accepts() (bool, string) {
	switch {
	case !t.Trusted:
		return false, t.Name + " is not paired with this device: pair with it first"
	case !t.Online:
		return false, t.Name + " is offline"
	}
	return true, ""
}
