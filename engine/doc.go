// Package engine runs graphical apps in checkpointable containers and moves
// them through their lifecycle: each app gets a libcontainer container with its
// own PID, mount, IPC, UTS and network namespaces, an overlay root (the host's
// read-only root plus a private upper dir), a tmpfs /tmp, a memory-limited
// cgroup and a private Xvfb whose framebuffer the host can read without an X
// connection. The engine suspends an app to a CRIU image on disk and resumes
// it, builds the app's handles manifest (see engine/handles), and persists
// every app's state so a restarted daemon re-adopts what still runs.
//
// The engine knows nothing of the UI, of mDNS or of how images travel between
// machines; the app package wires it to the local API.
package engine
