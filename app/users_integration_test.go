//go:build integration

package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
)

// Two workstations with users of their own: each daemon sees its own
// /etc/passwd, /etc/group and /home (testnet.Accounts). alice and bob have
// other uids on each; with shared, both see one homes directory (NFS).
type userDesk struct {
	net    *testnet.Net
	a, b   *workstation
	accA   *testnet.Accounts
	accB   *testnet.Accounts
	homeA  map[string]string // user → home on ws-a, as the test sees it
	homeB  map[string]string
	uidA   map[string]int
	uidB   map[string]int
	handGA int // the handoff group's id on ws-a
}

// handoffGroup is the id the workstations' handoff group gets when the
// machine has none of its own.
const handoffGroup = 4999

func newUserDesk(t *testing.T, shared bool) *userDesk {
	t.Helper()
	n := testnet.New(t, "a", "b")
	d := &userDesk{net: n, homeA: map[string]string{}, homeB: map[string]string{}, uidA: map[string]int{}, uidB: map[string]int{}}
	d.accA = testnet.NewAccounts(t, filepath.Join(testutil.StateDir(t), "accounts-a"))
	d.accB = testnet.NewAccounts(t, filepath.Join(testutil.StateDir(t), "accounts-b"))
	if shared {
		d.accB.ShareHomes(d.accA)
	}
	for i, u := range []string{"alice", "bob"} {
		d.uidA[u], d.uidB[u] = 4101+i, 5101+i
		if shared {
			d.uidB[u] = d.uidA[u] // one home, one owner: as NFS without id mapping
		}
		d.homeA[u] = d.accA.Add(t, u, d.uidA[u])
		d.homeB[u] = d.accB.Add(t, u, d.uidB[u])
	}
	d.handGA = addHandoffGroup(t, d.accA, "alice", "bob")
	addHandoffGroup(t, d.accB, "alice", "bob")
	d.a = startWorkstationWith(t, n.Host("a"), "ws-a", d.accA)
	d.b = startWorkstationWith(t, n.Host("b"), "ws-b", d.accB)
	ctx := context.Background()
	waitPeer(t, d.a, "ws-b", true, 15*time.Second)
	waitPeer(t, d.b, "ws-a", true, 15*time.Second)
	idA, _ := d.a.client.ID(ctx)
	idB, _ := d.b.client.ID(ctx)
	if _, err := d.a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	return d
}

// addHandoffGroup gives the accounts a handoff group with members, with
// the machine's handoff group id if it has one.
func addHandoffGroup(t *testing.T, acc *testnet.Accounts, members ...string) int {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(acc.Dir, "group"))
	var lines []string
	gid := handoffGroup
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 4 && f[0] == "handoff" {
			gid, _ = strconv.Atoi(f[2])
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, fmt.Sprintf("handoff:x:%d:%s", gid, strings.Join(members, ",")))
	if err := os.WriteFile(filepath.Join(acc.Dir, "group"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return gid
}

func startWorkstationWith(t *testing.T, h *testnet.Host, name string, acc *testnet.Accounts) *workstation {
	t.Helper()
	dir := testutil.StateDir(t)
	w := &workstation{name: name, host: h, dir: dir, client: NewClient(filepath.Join(dir, "handoff.sock")), accounts: acc}
	w.start(t)
	t.Cleanup(func() { w.stop(t) })
	return w
}

// cliAs runs the handoff command as uid, a member of the handoff group, on
// workstation w: what a person in a terminal there does.
func cliAs(t *testing.T, w *workstation, uid, handoffGID int, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(userBinary(t), append([]string{"--socket", w.client.Socket}, args...)...)
	cmd.Env = append(os.Environ(), "HANDOFF_TEST_MAIN=1", "LANG=C.UTF-8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{uint32(handoffGID)}}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFileContent waits until the file at path holds want.
func waitFileContent(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q (%v), want %q in it", path, data, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAppsRunAsTheirUser: a member of the handoff group runs an app; it
// runs with their uid, cannot read /etc/shadow or another user's home, and
// no other user can see it or act on it.
func TestAppsRunAsTheirUser(t *testing.T) {
	d := newUserDesk(t, false)
	probe := `id -u > ~/id; cat /etc/shadow > ~/shadow 2>&1; ls -A /home > ~/homes; ls /home/bob > ~/bobs 2>&1; exec xclock`
	if out, err := cliAs(t, d.a, d.uidA["alice"], d.handGA, "run", "--name", "alices", "--", "sh", "-c", probe); err != nil {
		t.Fatalf("alice runs an app: %v %s", err, out)
	}
	home := d.homeA["alice"]
	// The last of the probe's files: once it holds ls's answer, all are written.
	waitFileContent(t, filepath.Join(home, "bobs"), "No such file")
	for file, want := range map[string]string{"id": strconv.Itoa(d.uidA["alice"]), "homes": "alice"} {
		data, _ := os.ReadFile(filepath.Join(home, file))
		if strings.TrimSpace(string(data)) != want {
			t.Errorf("~/%s = %q, want %q", file, data, want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(home, "shadow")); !strings.Contains(string(data), "Permission denied") {
		t.Errorf("the app read /etc/shadow: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(home, "bobs")); !strings.Contains(string(data), "No such file") {
		t.Errorf("the app sees bob's home: %q", data)
	}
	st, err := os.Stat(filepath.Join(home, "id"))
	if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != d.uidA["alice"] {
		t.Errorf("a file the app wrote is not alice's: %v", err)
	}
	// bob sees nothing of it and can do nothing to it; root sees it.
	out, err := cliAs(t, d.a, d.uidA["bob"], d.handGA, "ls")
	if err != nil || strings.Contains(out, "alices") {
		t.Errorf("bob's ls: %v %q", err, out)
	}
	for _, cmd := range [][]string{{"stop", "alices"}, {"suspend", "alices"}, {"send", "alices", "ws-b"}, {"screenshot", "alices", filepath.Join(worldWritable(t), "x.png")}} {
		if out, err := cliAs(t, d.a, d.uidA["bob"], d.handGA, cmd...); err == nil || !strings.Contains(out, "no such app") {
			t.Errorf("bob: handoff %s: %v %q", strings.Join(cmd, " "), err, out)
		}
	}
	if out, err := cliAs(t, d.a, d.uidA["bob"], d.handGA, "run", "--as", "root", "--", "xclock"); err == nil || !strings.Contains(out, "only root may run an app as root") {
		t.Errorf("bob asks for root: %v %q", err, out)
	}
	if out, err := cliAs(t, d.a, d.uidA["bob"], d.handGA, "run", "--as", "alice", "--", "xclock"); err == nil || !strings.Contains(out, "only as yourself") {
		t.Errorf("bob asks to be alice: %v %q", err, out)
	}
	if out, err := cliAs(t, d.a, d.uidA["alice"], d.handGA, "ls"); err != nil || !strings.Contains(out, "alices") {
		t.Errorf("alice's ls: %v %q", err, out)
	}
}

// vimEdit types into the vim an xterm of app runs, on workstation w.
func vimEdit(t *testing.T, w *workstation, app, keys string) {
	t.Helper()
	info, err := w.client.App(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(info.PID), "-m", "-n", "-p",
		"env", "DISPLAY=:1", "xdotool", "mousemove", "20", "20", "type", "--delay", "15", keys).CombinedOutput()
	if err != nil {
		t.Fatalf("type into %s on %s: %v %s", app, w.name, err, out)
	}
}

// startVim runs vim on ~/notes.txt for alice on ws-a and waits until it
// shows the file.
func startVim(t *testing.T, d *userDesk) {
	t.Helper()
	if out, err := cliAs(t, d.a, d.uidA["alice"], d.handGA, "run", "--name", "notes", "--size", "640x400", "--",
		"xterm", "-geometry", "80x24+0+0", "-e", "vim", "notes.txt"); err != nil {
		t.Fatalf("alice runs vim: %v %s", err, out)
	}
	// vim holds its swap file open once it shows the file.
	waitFileContent(t, filepath.Join(d.homeA["alice"], ".notes.txt.swp"), "")
	settledShot(t, d.a, "notes")
}

// TestUsersFilesFollowTheApp: alice edits ~/notes.txt in vim on ws-a, hands
// it to ws-b and saves there: the file is in her home on ws-b, hers. After
// bring-back and another save, ws-a's copy has both edits.
func TestUsersFilesFollowTheApp(t *testing.T) {
	d := newUserDesk(t, false)
	ctx := context.Background()
	notesA := filepath.Join(d.homeA["alice"], "notes.txt")
	notesB := filepath.Join(d.homeB["alice"], "notes.txt")
	writeAs(t, notesA, "first line, from the disk\n", d.uidA["alice"])
	startVim(t, d)
	vimEdit(t, d.a, "notes", "Oadded on ws-a\x1b")
	settledShot(t, d.a, "notes")

	res, err := d.a.client.Send(ctx, "notes", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	if res.SharedHome || res.HomeFiles == 0 || res.HomeBytes == 0 {
		t.Fatalf("separate homes, yet: shared %v, %d files, %d bytes", res.SharedHome, res.HomeFiles, res.HomeBytes)
	}
	// vim's swap file, which it holds open, arrived before the app.
	if _, err := os.Stat(filepath.Join(d.homeB["alice"], ".notes.txt.swp")); err != nil {
		t.Fatalf("the swap file vim holds did not travel: %v", err)
	}
	vimEdit(t, d.b, "notes", ":w\n")
	waitFileContent(t, notesB, "added on ws-a")
	waitFileContent(t, notesB, "first line, from the disk")
	if st, err := os.Stat(notesB); err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != d.uidB["alice"] {
		t.Fatalf("notes.txt on ws-b is not ws-b's alice's (uid %d): %v", d.uidB["alice"], err)
	}
	vimEdit(t, d.b, "notes", "Oadded on ws-b\x1b")
	settledShot(t, d.b, "notes")

	if _, err := d.a.client.BringBack(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	vimEdit(t, d.a, "notes", ":w\n")
	waitFileContent(t, notesA, "added on ws-b")
	data, _ := os.ReadFile(notesA)
	for _, want := range []string{"first line, from the disk", "added on ws-a", "added on ws-b"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("ws-a's notes.txt lacks %q:\n%s", want, data)
		}
	}
	if st, _ := os.Stat(notesA); int(st.Sys().(*syscall.Stat_t).Uid) != d.uidA["alice"] {
		t.Error("ws-a's notes.txt is not ws-a's alice's any more")
	}
	// ws-a's copy was only read by the app before it left, and nobody
	// changed it since: the version written on ws-b replaced it, no
	// second copy was needed.
	if extra, _ := filepath.Glob(filepath.Join(d.homeA["alice"], "*(from ws-b)*")); len(extra) != 0 {
		t.Errorf("a copy was kept beside a file nobody changed: %v", extra)
	}
}

// TestConflictKeepsBothVersions: ws-b's alice has her own notes.txt, never
// synced: it is kept, ws-a's comes beside it, and both sides say so.
func TestConflictKeepsBothVersions(t *testing.T) {
	d := newUserDesk(t, false)
	ctx := context.Background()
	writeAs(t, filepath.Join(d.homeA["alice"], "notes.txt"), "ws-a's version\n", d.uidA["alice"])
	writeAs(t, filepath.Join(d.homeB["alice"], "notes.txt"), "ws-b's own version\n", d.uidB["alice"])
	notices := func(w *workstation) <-chan Event {
		ch, err := w.client.Events(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	evA, evB := notices(d.a), notices(d.b)
	startVim(t, d)
	// Saved on ws-a: the app wrote it, so it goes with the app.
	vimEdit(t, d.a, "notes", "Oedited on ws-a\x1b:w\n")
	waitFileContent(t, filepath.Join(d.homeA["alice"], "notes.txt"), "edited on ws-a")
	res, err := d.a.client.Send(ctx, "notes", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	if res.Home == nil || len(res.Home.Kept) != 1 || res.Home.Kept[0].SavedAs != "notes (from ws-a).txt" {
		t.Fatalf("placement %+v", res.Home)
	}
	if data, _ := os.ReadFile(filepath.Join(d.homeB["alice"], "notes.txt")); string(data) != "ws-b's own version\n" {
		t.Fatalf("ws-b's version was touched: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(d.homeB["alice"], "notes (from ws-a).txt")); !strings.Contains(string(data), "edited on ws-a") {
		t.Fatalf("ws-a's version is not beside it: %q", data)
	}
	for name, ch := range map[string]<-chan Event{"ws-a": evA, "ws-b": evB} {
		if !sawNotice(ch, "alice", "notes.txt") {
			t.Errorf("%s did not tell alice about the two versions", name)
		}
	}
}

func sawNotice(ch <-chan Event, user, about string) bool {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Type == EventNotice && ev.User == user && ev.Notice != nil && strings.Contains(ev.Notice.Body, about) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestSharedHomeCopiesNothing: both workstations mount one homes directory
// (as NFS would): the handoff sees it and sends no file.
func TestSharedHomeCopiesNothing(t *testing.T) {
	d := newUserDesk(t, true)
	ctx := context.Background()
	writeAs(t, filepath.Join(d.homeA["alice"], "notes.txt"), "one file for both\n", d.uidA["alice"])
	startVim(t, d)
	vimEdit(t, d.a, "notes", "Oadded on ws-a\x1b:w\n")
	waitFileContent(t, filepath.Join(d.homeA["alice"], "notes.txt"), "added on ws-a")
	res, err := d.a.client.Send(ctx, "notes", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	if !res.SharedHome || res.HomeBytes != 0 || res.Home != nil {
		t.Fatalf("shared home: shared %v, %d bytes, placement %+v", res.SharedHome, res.HomeBytes, res.Home)
	}
	if ents, _ := filepath.Glob(filepath.Join(d.homeA["alice"], "*from ws-a*")); len(ents) != 0 {
		t.Fatalf("copies were made: %v", ents)
	}
	if ents, _ := filepath.Glob(filepath.Join(d.homeA["alice"], ".handoff-probe-*")); len(ents) != 0 {
		t.Fatalf("the probe was left: %v", ents)
	}
}

// TestNoSuchUserRefusedBeforeFreeze: carol has an account on ws-a only;
// ws-b refuses her app at the offer, and the app never stopped on ws-a.
func TestNoSuchUserRefusedBeforeFreeze(t *testing.T) {
	d := newUserDesk(t, false)
	ctx := context.Background()
	uid := 4199
	d.accA.Add(t, "carol", uid)
	addHandoffGroup(t, d.accA, "alice", "bob", "carol")
	events, err := d.a.client.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cliAs(t, d.a, uid, d.handGA, "run", "--name", "carols", "--", "xclock"); err != nil {
		t.Fatalf("carol runs an app: %v %s", err, out)
	}
	before, _ := d.a.client.App(ctx, "carols")
	_, err = d.a.client.Send(ctx, "carols", "ws-b")
	var refused *migration.RefusedError
	if err == nil || !strings.Contains(err.Error(), "no user carol") {
		t.Fatalf("send of a user ws-b lacks: %v", err)
	}
	_ = errors.As(err, &refused)
	after, err := d.a.client.App(ctx, "carols")
	if err != nil || after.State != engine.StateRunning || after.PID != before.PID {
		t.Fatalf("carol's app after the refusal: %+v (before %+v), %v", after, before, err)
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Handoff != nil && ev.Handoff.App == "carols" && (ev.Handoff.Phase == migration.PhaseFreeze || ev.Handoff.Phase == migration.PhasePreCopy) {
				t.Fatalf("the handoff reached %s before the refusal", ev.Handoff.Phase)
			}
		case <-deadline:
			return
		}
	}
}

func writeAs(t *testing.T, path, content string, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// userBinary is this test binary where a user may run it (go test keeps
// it in a directory of root's own), for the test's life.
func userBinary(t *testing.T) string {
	t.Helper()
	if p, ok := userBins.Load(t.Name()); ok {
		return p.(string)
	}
	dir := testutil.StateDir(t)
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "handoff")
	data, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(p, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	userBins.Store(t.Name(), p)
	return p
}

var userBins sync.Map // test name → its copy of the binary

// worldWritable is a directory any user may write in, for the test's life.
func worldWritable(t *testing.T) string {
	dir := testutil.StateDir(t)
	os.Chmod(dir, 0o1777)
	return dir
}
