package engine

import (
	"slices"
	"testing"
)

func TestApplyProfile(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string
		profile   string
		wantArgs  []string
		wantEnv   []string
	}{
		{name: "no profile", args: []string{"xterm", "-e", "vim"}, wantArgs: []string{"xterm", "-e", "vim"}},
		{name: "by base name", args: []string{"/usr/bin/chromium", "file:///page.html"}, profile: "chromium",
			wantArgs: []string{"/usr/bin/chromium", "--no-sandbox", "file:///page.html"}},
		{name: "not repeated", args: []string{"chromium", "--no-sandbox"}, profile: "chromium",
			wantArgs: []string{"chromium", "--no-sandbox"}},
		{name: "a name that only contains it", args: []string{"chromium-wrapper"}, wantArgs: []string{"chromium-wrapper"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := Spec{Args: slices.Clone(tt.args), Env: slices.Clone(tt.env)}
			if got := applyProfile(&spec); got != tt.profile {
				t.Errorf("profile %q, want %q", got, tt.profile)
			}
			if !slices.Equal(spec.Args, tt.wantArgs) {
				t.Errorf("args %q, want %q", spec.Args, tt.wantArgs)
			}
			if !slices.Equal(spec.Env, tt.wantEnv) {
				t.Errorf("env %q, want %q", spec.Env, tt.wantEnv)
			}
		})
	}
}

// Every profile says why, and what it adds passes the checks every spec
// gets (no reserved variables).
func TestProfilesAreDocumented(t *testing.T) {
	for _, p := range launchProfiles {
		if p.Why == "" || len(p.Executables) == 0 || len(p.Args)+len(p.Env) == 0 {
			t.Errorf("profile %q: needs a reason, executables and something it adds", p.Name)
		}
		spec := Spec{Name: "x", Args: []string{p.Executables[0]}, User: User{Name: "someone", UID: 1000, GID: 1000, Home: "/home/someone"}}
		spec.fillDefaults()
		applyProfile(&spec)
		if err := spec.validate(); err != nil {
			t.Errorf("profile %q makes an invalid spec: %v", p.Name, err)
		}
	}
}
