package engine

import (
	"path"
	"slices"
	"strings"
)

// Launch profiles adapt how an app is started to life in a checkpointable
// container, per toolkit or application, where the app's defaults cannot
// work there. Each one is matched by the executable the app is started
// with (the base name of its first argument) and adds command-line
// arguments or environment variables; the user's own arguments come after
// the profile's, and a variable the spec sets itself wins over the
// profile's.
//
// A profile may relax an app's own sandbox only where the container
// already gives what that sandbox gives: every app runs as its user in a
// user namespace of its own, with no capabilities, no new privileges, a
// seccomp filter (Docker's default) and only loopback networking, so a
// compromised renderer stays inside the container. What every profile
// turns off and why is written beside it, and in the README.
type launchProfile struct {
	Name string
	// Executables are the base names the profile applies to.
	Executables []string
	Args        []string
	Env         []string
	// Why is the reason, in words, logged when the profile is applied.
	Why string
}

var launchProfiles = []launchProfile{
	{
		Name:        "chromium",
		Executables: []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"},
		// Chromium's first layer of sandbox is a setuid helper or
		// namespaces it makes itself; the container's seccomp filter
		// refuses new namespaces to an app (CRIU cannot checkpoint nested
		// ones either), and with neither Chromium refuses to start ("No
		// usable sandbox!"). --no-sandbox turns off its setuid/namespace
		// sandbox and its seccomp-bpf layer; the container is the sandbox.
		Args: []string{"--no-sandbox"},
		Why:  "Chromium's own sandbox needs namespaces the container refuses; the container is its sandbox",
	},
}

// profileFor returns the launch profile of an app started with args, or
// nil.
func profileFor(args []string) *launchProfile {
	if len(args) == 0 {
		return nil
	}
	exe := path.Base(args[0])
	for i := range launchProfiles {
		if slices.Contains(launchProfiles[i].Executables, exe) {
			return &launchProfiles[i]
		}
	}
	return nil
}

// applyProfile adds the launch profile of spec's executable, if any, to
// spec and returns its name ("" when none applies). Arguments the spec
// already has are not repeated.
func applyProfile(spec *Spec) string {
	p := profileFor(spec.Args)
	if p == nil {
		return ""
	}
	args := []string{spec.Args[0]}
	for _, a := range p.Args {
		if !slices.Contains(spec.Args[1:], a) {
			args = append(args, a)
		}
	}
	spec.Args = append(args, spec.Args[1:]...)
	set := map[string]bool{}
	for _, kv := range spec.Env {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	var env []string
	for _, kv := range p.Env {
		if name, _, _ := strings.Cut(kv, "="); !set[name] {
			env = append(env, kv)
		}
	}
	spec.Env = append(env, spec.Env...)
	return p.Name
}
