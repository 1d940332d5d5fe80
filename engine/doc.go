// Package engine runs graphical apps in checkpointable containers and moves
// them through their lifecycle: each app gets a libcontainer container with its
// own PID, mount, IPC, UTS and network namespaces, an overlay root (the host's
// read-only root plus a private upper dir, whose /tmp hides the host's), a
// memory-limited cgroup, a private Xvfb whose framebuffer the host can read
// without an X connection, and a PulseAudio server of its own whose null sink
// the host can listen to (see DialSound). The network namespace (loopback only) and the
// framebuffer's directory (a bind mount) are made by the engine on the host, so
// that CRIU neither saves nor restores them: the framebuffer travels in the
// image dir as a page image instead. CRIU runs inside the app's network
// namespace, on an app the engine has frozen, with a kernel-probe cache the
// engine makes where CRIU cannot keep one, and leaves cgroups to libcontainer;
// while a restore is expected the engine keeps the kernel ready for it (see
// ExpectRestore): each saves frozen time. The engine suspends an app to a CRIU
// image on disk and resumes it, dumps it for a handoff and instantiates it from
// a received image, builds the app's handles manifest (see engine/handles),
// estimates from a sample of its memory how much of it changed (see
// SampleMemory: there is no dirty-page tracking here), and persists every
// app's state so a restarted daemon re-adopts what still runs.
//
// The engine knows nothing of the UI, of mDNS or of how images travel between
// machines; the app package wires it to the local API.
package engine
