// Package handles builds the handles manifest of an app container: every file
// descriptor and memory-mapped file of every process in the container, with
// what it is (file, pipe, socket, terminal, device, anon inode…), where it
// lives (upper dir, base layer, tmpfs, kernel), its size, mtime and — for
// files the destination must already have — its content hash (XXH3-128:
// five times faster than SHA-256, and a peer that could forge a collision
// would only give its own app the destination's file), plus the peers of
// pipes and sockets and whether they are inside the container. Each handle is
// classified: it moves with the checkpoint, it must be present on the
// destination, or it blocks the move (with a reason and a remedy in plain
// words). Two machines synchronize this manifest before a migration: the
// source sends it, the destination answers with [Manifest.Missing], and
// blockers are shown to the user before anything is frozen. The package reads
// /proc and sock_diag only; it knows nothing of libcontainer, CRIU, the
// network protocol or the UI.
//
// # Use
//
//	cache := handles.NewHashCache()            // keep one for the daemon's life
//	m, err := handles.Build(ctx, handles.Scope{
//		PIDs: pids, InitPID: initPID,          // host PIDs, from the cgroup
//		UpperDir: upper, Rootfs: rootfs,
//		Mounts:  []handles.MountSpec{{Destination: "/", Type: "overlay"}, {Destination: "/tmp", Type: "tmpfs"}},
//		Display: handles.Display{Width: 1280, Height: 800, Depth: 24},
//	}, cache)
//	if b := m.Blocking(); len(b) > 0 { … name b[i].Path, b[i].Reason, b[i].Remedy … }
//	handles.WriteTable(os.Stdout, m)           // `handoff handles NAME`
//	json.Marshal(m)                            // `handoff handles NAME --json`, handle sync
//
// On the destination: missing := m.Missing(handles.LocalChecker("/", cache, stateDir)).
//
// # Classes
//
//   - moves: anonymous memory; files in the upper dir or on the container's
//     tmpfs; files of kernel filesystems (proc, sysfs, devpts…), reopened by
//     path; deleted files (CRIU carries them as ghost files; Summary.GhostMax
//     says how large the dump's ghost limit must be); memfd and shared
//     anonymous memory; pipes and unix sockets whose other end is inside or
//     closed; TCP/UDP sockets that are listening, unconnected or connected to
//     loopback inside the container's network namespace (established ones need
//     CRIU's --tcp-established: Summary.TCPEstablished counts them); netlink
//     and packet sockets; ptys made inside; eventfd, epoll, timerfd, signalfd,
//     inotify, fanotify and pidfd handles; the container's own namespaces.
//   - present: regular files (opened or mapped) and directories of the base
//     layer or of other persistent mounts (hashed), /dev/tty, and the standard
//     devices /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom
//     (recognized by device number, not name).
//   - blocks: any file whose mount is not one of the container's (its fdinfo
//     mnt_id is not in the init's mountinfo, or a mapped path is not visible in
//     the container) — a host file, a host terminal, even the host's /dev/null
//     passed in as stdio, because CRIU fails with "Can't lookup mount"; a pipe
//     whose other end a host process holds; a unix socket whose peer is held
//     outside the container (an X client of the host, D-Bus); TCP connections
//     and connected UDP sockets to a non-loopback address; sockets made in the
//     host's network namespace; non-standard character and block devices and
//     terminals of the machine; POSIX message queues; io_uring,
//     userfaultfd, perf_event, bpf, landlock and other anon inodes CRIU
//     cannot dump; namespaces outside the container.
//
// # Deduplication
//
// One [Handle] per object, not per fd: files by path as seen inside the
// container (so libc mapped by ten processes is one entry with ten users),
// deleted files by device and inode, pipes and sockets by inode, anon inodes
// per fd (the kernel gives them no identity). Each use is a [User]: a PID
// with an fd number, or FD -1 for the memory mappings of that file by that
// process (Map lists the permissions, e.g. "r--p,r-xp").
//
// # JSON schema, version 1
//
// [Manifest.MarshalJSON] writes a canonical form: handles sorted by id, users
// by pid and fd, processes by pid, mounts by mountpoint; the summary is
// recomputed; absent optional fields are omitted. The same manifest always
// gives the same bytes. Readers must check "version" and ignore unknown
// fields; the version changes when a field changes meaning or type, or a
// class or kind is added.
//
//	{
//	  "version": 1,                  // schema version, integer
//	  "init_pid": 4242,              // host PID of the container's init
//	  "display": {"width": 1280, "height": 800, "depth": 24},
//	  "env": ["PATH=/usr/bin:/bin", "DISPLAY=:1"],   // the init's environment
//	  "mounts": [                    // the init's mountinfo
//	    {"id": 812, "parent": 790, "mountpoint": "/", "fstype": "overlay",
//	     "source": "overlay", "root": "/", "options": "rw,relatime",
//	     "configured": "overlay"}    // type in Scope.Mounts, "" if made by the runtime
//	  ],
//	  "processes": [
//	    {"pid": 4242, "nspid": 1, "ppid": 4200, "comm": "Xvfb", "exe": "/usr/bin/Xvfb",
//	     "cmdline": ["Xvfb", ":1"], "env": ["only if it differs from the init's"],
//	     "anon_bytes": 9437184}
//	  ],
//	  "handles": [
//	    {"id": "file:/usr/lib/x86_64-linux-gnu/libc.so.6",
//	     "kind": "mapped",           // regular mapped dir deleted memfd pipe fifo unix tcp udp
//	                                 // netlink socket tty chardev blockdev anon nsfs unknown
//	     "class": "present",         // moves | present | blocks
//	     "path": "/usr/lib/x86_64-linux-gnu/libc.so.6",  // inside the container
//	     "mount": "/", "fstype": "overlay", "layer": "base",  // layer: upper | base
//	     "size": 1926232, "mtime": "2024-06-01T10:00:00Z", "inode": 1234,
//	     "hash": "6b4a…",            // present regular and mapped files only (XXH3-128)
//	     "users": [{"pid": 4242, "comm": "Xvfb", "fd": -1, "map": "r--p,r-xp"}]},
//	    {"id": "socket:20068", "kind": "unix", "class": "blocks",
//	     "path": "socket:[20068]", "proto": "UNIX-STREAM", "inode": 20068,
//	     "peer": {"inside": false, "address": "/tmp/.X11-unix/X0",
//	              "inode": 19340, "pid": 812, "comm": "Xorg"},
//	     "reason": "unix socket connected to host process Xorg (pid 812) at /tmp/.X11-unix/X0",
//	     "remedy": "close the connection to /tmp/.X11-unix/X0 (…), or quit xterm (pid 4250)",
//	     "users": [{"pid": 4250, "comm": "xterm", "fd": 3,
//	                "flags": "O_RDWR|O_CLOEXEC", "mnt_id": 15}]}
//	  ],
//	  "summary": {"moves": 9, "present": 87, "blocks": 1,
//	              "present_bytes": 224741393, // sum of present sizes
//	              "ghost_bytes": 0, "ghost_max": 0, "tcp_established": 0,
//	              "anon_bytes": 19197952},
//	  "skipped": ["pid 4251 exited during the scan"]   // informational
//	}
//
// Other fields of a handle: "device" ("char 1:3") for device nodes and
// terminals; "note" with facts the engine needs (ghost file size, loopback
// TCP needing --tcp-established, where a moving file lives); for TCP/UDP the
// "path" is "socket:[INO] LOCAL-ADDR" and "peer" has "address" and, for TCP,
// "state"; users of fds carry "flags" (open flags), "pos" and "mnt_id".
// testdata/manifest.golden.json is a complete example, checked by the tests.
package handles
