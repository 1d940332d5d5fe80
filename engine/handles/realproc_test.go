package handles

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBuildRealProcesses starts two helper processes in the test's own
// namespaces holding pipes, sockets and files between them and to the test
// process, and checks the manifest Build makes of them.
func TestBuildRealProcesses(t *testing.T) {
	dir := t.TempDir()
	pipe := func() (*os.File, *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r, w
	}
	inner1R, inner1W := pipe() // A writes, B reads: both ends inside
	toHostR, toHostW := pipe() // A writes, the test reads: blocks
	closedR, closedW := pipe() // A reads, writer closed: moves
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sp0, sp1 := os.NewFile(uintptr(sp[0]), "sp0"), os.NewFile(uintptr(sp[1]), "sp1")
	t.Cleanup(func() { sp0.Close(); sp1.Close() })

	sockPath := filepath.Join(dir, "host.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	accepted, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })

	_, tcpC, tcpS := loopbackPair(t)

	content := []byte("a file the destination must have\n")
	regPath := filepath.Join(dir, "present.txt")
	if err := os.WriteFile(regPath, content, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := os.Open(regPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	delPath := filepath.Join(dir, "deleted.bin")
	if err := os.WriteFile(delPath, make([]byte, 12345), 0o644); err != nil {
		t.Fatal(err)
	}
	del, err := os.Open(delPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { del.Close() })
	if err := os.Remove(delPath); err != nil {
		t.Fatal(err)
	}
	mfd, err := unix.MemfdCreate("handles-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	memf := os.NewFile(uintptr(mfd), "memfd")
	t.Cleanup(func() { memf.Close() })
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	evf := os.NewFile(uintptr(efd), "eventfd")
	t.Cleanup(func() { evf.Close() })

	a := startHelper(t, "hold", []*os.File{
		inner1W, toHostW, closedR, sp0, connFile(t, uc), connFile(t, tcpC), reg, del, memf, evf,
	})
	b := startHelper(t, "hold", []*os.File{inner1R, sp1, connFile(t, tcpS)})
	toHostIno, innerIno, closedIno := fileInode(t, toHostR), fileInode(t, inner1R), fileInode(t, closedR)
	// Keep only what the test itself is meant to hold: toHostR and accepted.
	for _, f := range []*os.File{inner1R, inner1W, toHostW, closedR, closedW, sp0, sp1} {
		f.Close()
	}

	// A process that is already gone must be skipped, not fail the build.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}

	m, err := Build(context.Background(), Scope{
		PIDs:    []int{a.Process.Pid, b.Process.Pid, dead.Process.Pid},
		InitPID: a.Process.Pid,
		Display: Display{Width: 640, Height: 480, Depth: 24},
	}, NewHashCache())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Processes) != 2 {
		t.Errorf("got %d processes, want 2", len(m.Processes))
	}
	if !strings.Contains(strings.Join(m.Skipped, "\n"), fmt.Sprintf("pid %d exited", dead.Process.Pid)) {
		t.Errorf("exited pid not in skipped: %v", m.Skipped)
	}
	self := os.Getpid()
	apid, bpid := a.Process.Pid, b.Process.Pid

	check := func(id string, class Class) Handle {
		t.Helper()
		h := findHandle(t, m, id)
		if h.Class != class {
			t.Errorf("%s (%s %s): class %s, want %s; reason %q note %q", id, h.Kind, h.Path, h.Class, class, h.Reason, h.Note)
		}
		return h
	}

	h := check(fmt.Sprintf("pipe:%d", toHostIno), Blocks)
	if h.Peer == nil || h.Peer.PID != self || !strings.Contains(h.Reason, fmt.Sprintf("pid %d", self)) {
		t.Errorf("pipe to host: peer %+v reason %q", h.Peer, h.Reason)
	}
	h = check(fmt.Sprintf("pipe:%d", innerIno), Moves)
	if ps := usersPIDs(h); !ps[apid] || !ps[bpid] {
		t.Errorf("inner pipe users %v", h.Users)
	}
	check(fmt.Sprintf("pipe:%d", closedIno), Moves)

	h = check(fmt.Sprintf("socket:%d", sockInode(t, uc)), Blocks)
	if h.Kind != KindUnix || h.Peer == nil || h.Peer.PID != self || h.Peer.Address != sockPath {
		t.Errorf("unix socket to host: kind %s peer %+v", h.Kind, h.Peer)
	}
	if !strings.Contains(h.Reason, sockPath) || !strings.Contains(h.Reason, fmt.Sprintf("pid %d", self)) {
		t.Errorf("unix socket to host: reason %q does not name the peer", h.Reason)
	}
	// The socketpair: A's and B's ends are each other's peer, both inside.
	pairs := 0
	for _, h := range m.Handles {
		if h.Kind == KindUnix && h.Peer != nil && h.Peer.Inside {
			pairs++
			if h.Class != Moves {
				t.Errorf("socketpair end %s: %s", h.ID, h.Class)
			}
		}
	}
	if pairs != 2 {
		t.Errorf("found %d socketpair ends inside, want 2", pairs)
	}
	h = check(fmt.Sprintf("socket:%d", sockInode(t, tcpC)), Moves)
	if h.Kind != KindTCP || h.Peer == nil || h.Peer.State != "ESTABLISHED" || !h.Peer.Inside {
		t.Errorf("loopback tcp: kind %s peer %+v", h.Kind, h.Peer)
	}
	check(fmt.Sprintf("socket:%d", sockInode(t, tcpS)), Moves)
	if m.Summary.TCPEstablished != 2 {
		t.Errorf("tcp_established = %d, want 2", m.Summary.TCPEstablished)
	}

	h = check("file:"+regPath, Present)
	if h.Hash != HashBytes(content) || h.Size != int64(len(content)) || h.MTime.IsZero() {
		t.Errorf("present file: hash %s size %d mtime %v", h.Hash, h.Size, h.MTime)
	}
	var delHandle *Handle
	for i := range m.Handles {
		if m.Handles[i].Kind == KindDeleted && m.Handles[i].Path == delPath {
			delHandle = &m.Handles[i]
		}
	}
	if delHandle == nil || delHandle.Class != Moves || delHandle.Size != 12345 || m.Summary.GhostMax < 12345 {
		t.Errorf("deleted file: %+v, ghost max %d", delHandle, m.Summary.GhostMax)
	}
	kinds := map[Kind]int{}
	for _, h := range m.Handles {
		kinds[h.Kind]++
		if h.Kind == KindAnon && h.Class != Moves {
			t.Errorf("anon %s: %s", h.Path, h.Class)
		}
		if h.Kind == KindMemfd && h.Class != Moves {
			t.Errorf("memfd %s: %s", h.Path, h.Class)
		}
		if h.Class == Present && (h.Kind == KindMapped || h.Kind == KindRegular) && len(h.Hash) != 32 {
			t.Errorf("present file %s has no hash", h.Path)
		}
	}
	if kinds[KindMemfd] == 0 || kinds[KindAnon] == 0 || kinds[KindMapped] == 0 {
		t.Errorf("kinds seen: %v", kinds)
	}
	null := check("file:/dev/null", Present)
	if ps := usersPIDs(null); !ps[apid] || !ps[bpid] {
		t.Errorf("/dev/null users %v", null.Users)
	}
	// The test binary is mapped by both helpers: one entry, two users.
	exe, _ := os.Executable()
	if h := findHandle(t, m, "file:"+exe); len(usersPIDs(h)) != 2 || h.Kind != KindMapped {
		t.Errorf("test binary mapping: kind %s users %v", h.Kind, h.Users)
	}
	if m.Summary.Blocks != 2 || len(m.Blocking()) != 2 {
		t.Errorf("blocks = %d (%d), want 2: %v", m.Summary.Blocks, len(m.Blocking()), m.Blocking())
	}

	var tbl bytes.Buffer
	if err := WriteTable(&tbl, m); err != nil {
		t.Fatal(err)
	}
	out := tbl.String()
	if !strings.HasPrefix(out, "BLOCKS THE MOVE (2)") || !strings.Contains(out, "why: unix socket connected to host process") ||
		strings.Index(out, "MUST BE PRESENT") < strings.Index(out, "fix: ") {
		t.Errorf("table:\n%s", out)
	}
}

// TestBuildNoInit fails clearly for a container that is not running.
func TestBuildNoInit(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), Scope{InitPID: dead.Process.Pid}, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("init pid %d", dead.Process.Pid)) {
		t.Errorf("err = %v", err)
	}
	if _, err := Build(context.Background(), Scope{}, nil); err == nil {
		t.Error("empty scope accepted")
	}
}
