package ui

import "testing"

func TestSoundFrom(t *testing.T) {
	for _, c := range []struct {
		name    string
		focused string
		opened  []string
		muted   map[string]bool
		want    string
	}{
		{"no viewer", "", nil, nil, ""},
		{"the one viewer", "", []string{"a"}, nil, "a"},
		{"the last opened, without focus", "", []string{"a", "b"}, nil, "b"},
		{"the focused one over the last opened", "a", []string{"a", "b"}, nil, "a"},
		{"focus on something that is not a viewer", "gone", []string{"a", "b"}, nil, "b"},
		{"a muted viewer plays nothing and hands no turn on", "", []string{"a", "b"}, map[string]bool{"b": true}, ""},
		{"the focused viewer muted", "a", []string{"a", "b"}, map[string]bool{"a": true}, ""},
		{"another viewer muted", "a", []string{"a", "b"}, map[string]bool{"b": true}, "a"},
	} {
		if got := soundFrom(c.focused, c.opened, c.muted); got != c.want {
			t.Errorf("%s: soundFrom(%q, %v, %v) = %q, want %q", c.name, c.focused, c.opened, c.muted, got, c.want)
		}
	}
}
