//go:build integration

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/handoff/handoff/internal/testutil"
	"image"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/stream/fb"
)

// workstation is a daemon running in its own network namespace.
type workstation struct {
	name   string
	host   *testnet.Host
	cmd    *exec.Cmd
	client *Client
	dir    string
	// accounts, when set, is the workstation's own user database (its
	// daemon runs in a mount namespace that shows it).
	accounts *testnet.Accounts
	env      []string // more of the daemon's environment
}

func startWorkstation(t testing.TB, h *testnet.Host, name string, env ...string) *workstation {
	t.Helper()
	dir := testutil.StateDir(t)
	w := &workstation{name: name, host: h, dir: dir, env: env, client: NewClient(filepath.Join(dir, "handoff.sock"))}
	w.start(t)
	// Stop its apps before the harness kills the daemon: containers outlive
	// their daemon by design.
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *workstation) start(t testing.TB) {
	t.Helper()
	args := []string{os.Args[0], "--socket", w.client.Socket, "daemon",
		"--state-dir", filepath.Join(w.dir, "state"), "--listen", ":7466", "--name", w.name}
	if w.accounts != nil {
		args = w.accounts.Wrap(args...)
	}
	w.cmd = w.host.Command(context.Background(), args[0], args[1:]...)
	w.cmd.Env = append(append(os.Environ(), "HANDOFF_TEST_MAIN=1"), w.env...)
	log, _ := os.Create(filepath.Join(w.dir, "daemon.log"))
	w.cmd.Stdout, w.cmd.Stderr = log, log
	if err := w.host.Start(w.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(w.dir, "daemon.log"))
			t.Logf("%s daemon log:\n%s", w.name, data)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := w.client.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the daemon did not come up", w.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon cleanly (SIGTERM) after stopping its apps. It may
// be called more than once.
func (w *workstation) stop(t testing.TB) {
	if w.cmd.ProcessState != nil {
		return
	}
	ctx := context.Background()
	if apps, err := w.client.Apps(ctx); err == nil {
		for _, a := range apps {
			w.client.Stop(ctx, a.Name)
		}
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	w.cmd.Wait()
}

// waitPeer waits until w lists the named peer with online == want.
func waitPeer(t testing.TB, w *workstation, peer string, want bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		ps, err := w.client.Peers(context.Background())
		if err == nil {
			for _, p := range ps {
				if (p.Name == peer || p.ID.String() == peer) && p.Online == want && !p.Impostor {
					return time.Since(start)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s online=%v not seen within %v", w.name, peer, want, within)
	return 0
}

func typeInto(t *testing.T, w *workstation, app, text string) {
	t.Helper()
	// Keys typed before the shell drew its prompt are echoed twice, once by
	// the terminal and again by the shell: wait for the prompt.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var shot bytes.Buffer
		if err := w.client.Screenshot(context.Background(), app, &shot); err == nil {
			// A few hundred dark pixels on the first line (inside xterm's
			// border): a prompt. Under a hundred: a lone cursor. Nearly all: the black root, before xterm maps.
			if ink := fb.Ink(decodePNG(t, shot.Bytes()), image.Rect(4, 3, 300, 16)); ink > 150 && ink < 1800 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the shell in %s drew no prompt within 30 s", w.name, app)
		}
		time.Sleep(100 * time.Millisecond)
	}
	info, err := w.client.App(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(info.PID), "-m", "-n", "-p",
		"env", "DISPLAY=:1", "xdotool", "mousemove", "20", "20", "type", "--delay", "10", text).CombinedOutput()
	if err != nil {
		t.Fatalf("type into %s on %s: %v %s", app, w.name, err, out)
	}
}

func settledShot(t *testing.T, w *workstation, app string) []byte {
	t.Helper()
	var last []byte
	for i := 0; i < 30; i++ {
		var b bytes.Buffer
		if err := w.client.Screenshot(context.Background(), app, &b); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(b.Bytes(), last) {
			return last
		}
		last = b.Bytes()
		time.Sleep(400 * time.Millisecond)
	}
	t.Fatal("screen never settled")
	return nil
}

// TestTwoWorkstations: discovery across the bridge, trust, a refused
// untrusted handoff, a handoff with typed text, bring-back, clean stop.
func TestTwoWorkstations(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer a.stop(t)
	ctx := context.Background()

	t.Logf("ws-a saw ws-b after %v", waitPeer(t, a, "ws-b", true, 10*time.Second))
	waitPeer(t, b, "ws-a", true, 10*time.Second)

	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	typeInto(t, a, "notes", "typed on ws-a")

	// Not trusted yet: refused before anything happens, the app stays.
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("send to an untrusted peer: %v", err)
	}
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	if _, err := a.client.Trust(ctx, idB.ID.String(), TrustRequest{}); err != nil {
		t.Fatal(err)
	}
	// ws-a trusts ws-b, but ws-b does not trust ws-a: ws-b's channel says 403.
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err == nil || !strings.Contains(err.Error(), "not trusted by ws-b") {
		t.Fatalf("send to a peer that does not trust us: %v", err)
	}
	if _, err := b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if info, err := a.client.App(ctx, "notes"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("after refused handoffs the app is %+v, %v", info, err)
	}

	before := settledShot(t, a, "notes")
	res, err := a.client.Send(ctx, "notes", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("handoff ws-a → ws-b: downtime %v, %d bytes, phases %v", res.Downtime, res.Bytes, res.Phases)
	if after := settledShot(t, b, "notes"); !bytes.Equal(before, after) {
		n, where := fb.Diff(decodePNG(t, before), decodePNG(t, after))
		dir, _ := os.MkdirTemp("", "handoff-screens-")
		os.WriteFile(filepath.Join(dir, "ws-a.png"), before, 0o644)
		os.WriteFile(filepath.Join(dir, "ws-b.png"), after, 0o644)
		t.Errorf("ws-b's screen differs from ws-a's last screen: %d pixels in %v (both kept in %s)", n, where, dir)
	}
	if _, err := a.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("ws-a still has the app: %v", err)
	}
	if remote, _ := a.client.Remote(ctx); len(remote) != 1 || remote[0].PeerName != "ws-b" {
		t.Fatalf("ws-a's remote apps: %+v", remote)
	}
	// Both daemons remember the handoff.
	stA, _ := a.client.Status(ctx)
	stB, _ := b.client.Status(ctx)
	if n := len(stA.Handoffs); n == 0 || stA.Handoffs[n-1].Outcome != "done" || stA.Handoffs[n-1].PhasesMS["final"] == 0 && stA.Handoffs[n-1].Bytes == 0 {
		t.Fatalf("ws-a's handoff records: %+v", stA.Handoffs)
	}
	if n := len(stB.Handoffs); n == 0 || stB.Handoffs[n-1].Direction != "in" || stB.Handoffs[n-1].Peer != "ws-a" {
		t.Fatalf("ws-b's handoff records: %+v", stB.Handoffs)
	}
	// The attempt ws-b refused (it did not trust ws-a yet) is on record; the
	// one ws-a stopped itself (it did not trust ws-b) never started.
	refusals := 0
	for _, r := range stA.Handoffs {
		if r.Outcome == "refused" && strings.Contains(r.Error, "not trusted by ws-b") {
			refusals++
		}
	}
	if refusals != 1 || len(stA.Handoffs) != 2 {
		t.Errorf("ws-a's records: want 1 refusal and 1 success: %+v", stA.Handoffs)
	}
	typeInto(t, b, "notes", " and on ws-b")

	// Bring it back: ws-a asks ws-b to hand it back; ws-a trusts ws-b and
	// accepts without asking since it asked for it... it must be trusted
	// with auto-accept or answer the request.
	if _, err := a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	info, err := a.client.BringBack(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != engine.StateRunning {
		t.Fatalf("brought back: %+v", info)
	}
	if _, err := b.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("ws-b still has the app after bring-back: %v", err)
	}
	if remote, _ := a.client.Remote(ctx); len(remote) != 0 {
		t.Fatalf("ws-a still lists remote apps: %+v", remote)
	}

	// ws-b stops cleanly: ws-a marks it offline.
	b.stop(t)
	t.Logf("ws-a saw ws-b leave after %v", waitPeer(t, a, "ws-b", false, 10*time.Second))
}

// waitRequest waits for a pending request of the given kind on w.
func waitRequest(t *testing.T, w *workstation, kind string) HandoffRequest {
	t.Helper()
	for i := 0; i < 200; i++ {
		rs, _ := w.client.Requests(context.Background())
		for _, r := range rs {
			if r.Kind == kind {
				return r
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no %s request arrived", w.name, kind)
	return HandoffRequest{}
}

func TestPairing(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer a.stop(t)
	defer b.stop(t)
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)

	// Starting shows the same code on both screens at once.
	pc, err := a.client.PairCode(ctx, "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	req := waitRequest(t, b, "pair")
	if req.Code != pc.Code || req.From != "ws-a" || req.FromID != idA.ID {
		t.Fatalf("ws-b shows %+v, ws-a shows code %s", req, pc.Code)
	}
	// Declined by ws-b's user.
	b.client.Answer(ctx, req.ID, false)
	if _, err := a.client.Pair(ctx, "ws-b", pc.Code); err == nil || !strings.Contains(err.Error(), "declined") {
		t.Fatalf("declined pairing: %v", err)
	}

	// Every attempt has a code of its own: the nonces make it.
	codes := map[string]bool{pc.Code: true}
	gone := func() {
		t.Helper()
		for i := 0; ; i++ {
			rs, _ := b.client.Requests(ctx)
			if len(rs) == 0 {
				return
			}
			if i > 100 {
				t.Fatalf("ws-b still shows a cancelled pairing: %+v", rs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Cancelled by ws-a's user before confirming: the request disappears on ws-b.
	pc, err = a.client.PairCode(ctx, "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	codes[pc.Code] = true
	waitRequest(t, b, "pair")
	if err := a.client.PairCancel(ctx, "ws-b"); err != nil {
		t.Fatal(err)
	}
	gone()

	// Cancelled by ws-a while waiting for ws-b's user: the same.
	pc, err = a.client.PairCode(ctx, "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	codes[pc.Code] = true
	waitRequest(t, b, "pair")
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := a.client.Pair(cctx, "ws-b", pc.Code); done <- err }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	gone()

	// A code other than the one shown is refused before anything is asked.
	pc, err = a.client.PairCode(ctx, "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	codes[pc.Code] = true
	if _, err := a.client.Pair(ctx, "ws-b", "000 000"); err == nil {
		t.Fatal("pairing with a wrong code went through")
	}

	// Confirmed on both sides: each trusts the other. ws-b's user may
	// answer before ws-a's does.
	req = waitRequest(t, b, "pair")
	if req.Code != pc.Code {
		t.Fatalf("ws-b shows %s, ws-a %s", req.Code, pc.Code)
	}
	if err := b.client.Answer(ctx, req.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Pair(ctx, "ws-b", pc.Code); err != nil {
		t.Fatal(err)
	}
	if len(codes) < 3 {
		t.Errorf("four attempts showed only %d different codes: %v", len(codes), codes)
	}
	for _, w := range []*workstation{a, b} {
		ps, _ := w.client.Peers(ctx)
		trusted := 0
		for _, p := range ps {
			if p.Trusted {
				trusted++
			}
		}
		if trusted != 1 {
			t.Fatalf("%s trusts %d peers after pairing, want 1: %+v", w.name, trusted, ps)
		}
	}
}

// mallory is a device on the LAN with an identity of its own, talking the
// peer protocol from its namespace with whatever it likes.
type mallory struct {
	host *testnet.Host
	id   *discovery.Identity
}

func newMallory(t *testing.T, h *testnet.Host, dir string) *mallory {
	t.Helper()
	id, err := discovery.LoadOrCreateIdentity(dir, "ws-a")
	if err != nil {
		t.Fatal(err)
	}
	return &mallory{host: h, id: id}
}

// post sends a peer-channel request to w as mallory; it returns the status
// and the body.
func (m *mallory) post(t *testing.T, w *workstation, path string, body any) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peerID, err := w.client.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := m.id.Client(peerID.ID)
	client.Transport.(*http.Transport).DialContext = m.host.Dial
	data, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+w.host.Addr.String()+":7466"+path, bytes.NewReader(data))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s from %s: %v", path, m.host.Name, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestPairingFloodIsBounded: a device that is not trusted starts pairings
// with one certificate, then with a new one each time, and reveals its
// nonce properly so that ws-b shows prompts. ws-b shows one prompt per
// device and a few in all, refuses the rest, and trusts nothing.
func TestPairingFloodIsBounded(t *testing.T) {
	net := testnet.New(t, "b", "m")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer b.stop(t)
	bID, _ := b.client.ID(context.Background())
	attempt := func(m *mallory) (int, string) {
		in, c, err := discovery.NewInitiator(m.id.ID, bID.ID, "ws-a", nil)
		if err != nil {
			t.Fatal(err)
		}
		code, body := m.post(t, b, peerPairCommit, c)
		if code != http.StatusOK {
			return code, body
		}
		var ch discovery.PairChallenge
		if err := json.Unmarshal([]byte(body), &ch); err != nil {
			t.Fatal(err)
		}
		_, rv := in.Reveal(ch)
		return m.post(t, b, peerPairReveal, rv)
	}

	one := newMallory(t, net.Host("m"), t.TempDir())
	if code, body := attempt(one); code != http.StatusOK {
		t.Fatalf("a first pairing attempt: %d %s", code, body)
	}
	if code, body := attempt(one); code != http.StatusTooManyRequests || !strings.Contains(body, "already waiting") {
		t.Fatalf("a second attempt of the same device while one waits: %d %s", code, body)
	}
	// New certificates cost nothing; ws-b's limits bound them anyway.
	answered, refused := 1, 0
	for i := 0; i < 30; i++ {
		code, body := attempt(newMallory(t, net.Host("m"), t.TempDir()))
		switch code {
		case http.StatusOK:
			answered++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("attempt %d: %d %s", i, code, body)
		}
	}
	rs, _ := b.client.Requests(context.Background())
	t.Logf("31 pairing attempts from 31 certificates: %d answered, %d refused; ws-b shows %d prompts", answered, refused, len(rs))
	if answered > 4 || len(rs) > 4 || refused == 0 {
		t.Fatalf("%d attempts went through, %d prompts are up: want at most 4", answered, len(rs))
	}
	from := map[discovery.DeviceID]bool{}
	for _, r := range rs {
		if from[r.FromID] {
			t.Fatalf("two prompts from one device: %+v", rs)
		}
		from[r.FromID] = true
	}
	ps, _ := b.client.Peers(context.Background())
	for _, p := range ps {
		if p.Trusted {
			t.Fatalf("ws-b trusts %+v", p)
		}
	}
}

// TestAvahiSeesUs checks our announcement with an independent mDNS
// implementation: avahi-daemon and avahi-browse, run in a second
// workstation with a private mount namespace for their runtime dirs (a
// private system D-Bus included), so nothing of the host's is touched.
func TestAvahiSeesUs(t *testing.T) {
	for _, bin := range []string{"avahi-daemon", "avahi-browse", "dbus-daemon"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing: run `make deps`", bin)
		}
	}
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	defer a.stop(t)
	id, err := a.client.ID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// avahi and its bus live in a private PID namespace: they end with the
	// script, whatever happens.
	script := `set -e
mkdir -p /run/dbus /run/avahi-daemon
mount -t tmpfs tmpfs /run/dbus
mount -t tmpfs tmpfs /run/avahi-daemon
dbus-daemon --system --fork --nopidfile
avahi-daemon --daemonize --no-chroot --no-drop-root --no-rlimits
for i in $(seq 50); do [ -S /run/avahi-daemon/socket ] && break; sleep 0.1; done
timeout 10 avahi-browse --resolve --parsable --terminate --no-db-lookup _handoff._tcp
`
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := net.Host("b").Command(ctx, "unshare", "--mount", "--propagation", "private", "--fork", "--pid", "--mount-proc", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("avahi in ws-b: %v\n%s", err, out)
	}
	var found string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "=") && strings.Contains(line, "_handoff._tcp") {
			found = line
		}
	}
	if found == "" {
		t.Fatalf("avahi-browse did not resolve our service:\n%s", out)
	}
	found = unescapeAvahi(found)
	for _, want := range []string{"ws-a (" + id.Short + ")", "7466", `"id=` + id.ID.String() + `"`, `"v=1"`, `"name=ws-a"`} {
		if !strings.Contains(found, want) {
			t.Errorf("avahi's view lacks %s:\n%s", want, found)
		}
	}
}

// unescapeAvahi decodes avahi-browse's parsable escapes (\DDD, decimal).
func unescapeAvahi(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.Atoi(s[i+1 : i+4]); err == nil && n < 256 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// BenchmarkDiscovery measures, over 20 starts of a second daemon, the time
// from its process start to its appearance on the other workstation, and
// from a clean stop to its disappearance. Targets: p95 < 1 s and < 3 s.
func BenchmarkDiscovery(b *testing.B) {
	net := testnet.New(b, "a", "b")
	a := startWorkstation(b, net.Host("a"), "ws-a")
	defer a.stop(b)
	var appear, leave []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		w := startWorkstation(b, net.Host("b"), "ws-b")
		id, err := w.client.ID(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		// Each run is a new device (new state dir): wait for this one.
		waitPeer(b, a, id.ID.String(), true, 10*time.Second)
		appear = append(appear, time.Since(start))
		stopped := time.Now()
		w.stop(b)
		waitPeer(b, a, id.ID.String(), false, 10*time.Second)
		leave = append(leave, time.Since(stopped))
	}
	report := func(name string, ds []time.Duration) {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*95/100].Milliseconds()), name+"-p95-ms")
	}
	report("appear", appear)
	report("leave", leave)
}

// TestPeerKilled: a daemon that dies without a goodbye goes offline once it
// stops answering (browse cycles of 0.8 s; offline after 1.6 s unanswered).
func TestPeerKilled(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	defer a.stop(t)
	b := startWorkstation(t, net.Host("b"), "ws-b")
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	b.cmd.Process.Kill()
	b.cmd.Wait()
	t.Logf("ws-a saw the killed ws-b leave after %v", waitPeer(t, a, "ws-b", false, 15*time.Second))
}

// TestLinkCutDuringHandoff: the cable is pulled while the pre-copy streams.
// The send fails on its own (no byte moves for StallTimeout), the app keeps
// running on ws-a, and ws-b keeps nothing once the link is back.
func TestLinkCutDuringHandoff(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true})
	b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true})
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	// A slow link (4 Mbit/s) makes the pre-copy of ~16 MB last ~30 s.
	if out, err := exec.Command("ip", "netns", "exec", net.Host("a").NS, "tc", "qdisc", "add", "dev", "eth0", "root",
		"tbf", "rate", "4mbit", "burst", "32kb", "latency", "400ms").CombinedOutput(); err != nil {
		t.Fatalf("shape the link: %v %s", err, out)
	}
	events, _ := a.client.Events(ctx)
	done := make(chan error, 1)
	go func() { _, err := a.client.Send(ctx, "notes", "ws-b"); done <- err }()
	for ev := range events { // wait until the pre-copy moves bytes
		if ev.Type == EventHandoff && ev.Handoff.Phase == "pre-copy" && ev.Handoff.Bytes > 0 {
			break
		}
	}
	if err := net.Host("a").SetLink(false); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("send over a cut link: %v; want a stall", err)
	}
	t.Logf("send failed with: %v", err)
	if info, err := a.client.App(ctx, "notes"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("after the failed handoff the app is %+v, %v", info, err)
	}
	typeInto(t, a, "notes", "still here")
	net.Host("a").SetLink(true)
	// ws-b dropped the broken handoff when its transfer broke.
	transfers := filepath.Join(b.dir, "state", "transfers")
	for i := 0; ; i++ {
		ents, _ := os.ReadDir(transfers)
		if len(ents) == 0 {
			break
		}
		if i > 300 {
			t.Fatalf("ws-b keeps %d entries of a failed handoff", len(ents))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := b.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("ws-b has the app: %v", err)
	}
}

// TestDestinationKilledMidHandoff: ws-b's daemon dies (SIGKILL) during the
// pre-copy. The app keeps running on ws-a; ws-b, restarted, has nothing of it.
func TestDestinationKilledMidHandoff(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true})
	b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true})
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	// A slow link keeps the pre-copy going long enough to kill ws-b in it.
	if out, err := exec.Command("ip", "netns", "exec", net.Host("a").NS, "tc", "qdisc", "add", "dev", "eth0", "root",
		"tbf", "rate", "4mbit", "burst", "32kb", "latency", "400ms").CombinedOutput(); err != nil {
		t.Fatalf("shape the link: %v %s", err, out)
	}
	events, _ := a.client.Events(ctx)
	done := make(chan error, 1)
	go func() { _, err := a.client.Send(ctx, "notes", "ws-b"); done <- err }()
	for ev := range events {
		if ev.Type == EventHandoff && ev.Handoff.Phase == "pre-copy" && ev.Handoff.Bytes > 0 {
			break
		}
	}
	b.cmd.Process.Kill()
	b.cmd.Wait()
	err := <-done
	if err == nil {
		t.Fatal("the handoff succeeded although the destination died")
	}
	t.Logf("send failed with: %v", err)
	if info, err := a.client.App(ctx, "notes"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("after the failed handoff the app is %+v, %v", info, err)
	}
	typeInto(t, a, "notes", "still here")
	b.start(t)
	if _, err := b.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("the restarted ws-b has the app: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.dir, "state", "transfers")); len(ents) != 0 {
		t.Fatalf("the restarted ws-b keeps %d entries of the dead handoff", len(ents))
	}
}

// TestPeerMayOnlyTouchWhatItHanded: ws-a hands notes to ws-b, which also
// runs an app of its own. ws-a, even speaking the peer protocol itself
// with its own key, can neither bring back nor view ws-b's app; a device
// ws-b trusts that never had notes cannot take or view notes; ws-a still
// can, also after ws-b's daemon restarted.
func TestPeerMayOnlyTouchWhatItHanded(t *testing.T) {
	net := testnet.New(t, "a", "b", "c")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer a.stop(t)
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	if _, err := a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	// ws-c is trusted by ws-b, and never had anything of it.
	c := newMallory(t, net.Host("c"), t.TempDir())
	if _, err := b.client.Trust(ctx, c.id.ID.String(), TrustRequest{Name: "ws-c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "mine", Args: []string{"xterm"}, Width: 640, Height: 480}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 640, Height: 480}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err != nil {
		t.Fatal(err)
	}
	// ws-a's own key, used by hand.
	asA := &mallory{host: net.Host("a"), id: loadIdentity(t, a)}

	refused := func(m *mallory, path string, body any, who string) {
		t.Helper()
		code, msg := m.post(t, b, path, body)
		if code != http.StatusForbidden || !strings.Contains(msg, "did not hand") {
			t.Fatalf("%s: %s answered %d %s; want 403 saying it did not hand it", who, path, code, msg)
		}
	}
	allowed := func(m *mallory, path string, body any, who string) {
		t.Helper()
		// A garbage offer fails after the check: 409, not 403.
		if code, msg := m.post(t, b, path, body); code == http.StatusForbidden || code == http.StatusNotFound {
			t.Fatalf("%s: %s answered %d %s", who, path, code, msg)
		}
	}
	refused(asA, peerBringBack, map[string]string{"app": "mine"}, "ws-a bringing back ws-b's own app")
	refused(asA, peerView+"mine", ViewRequest{Offer: "v=0"}, "ws-a viewing ws-b's own app")
	refused(c, peerBringBack, map[string]string{"app": "notes"}, "ws-c bringing back ws-a's app")
	refused(c, peerView+"notes", ViewRequest{Offer: "v=0"}, "ws-c viewing ws-a's app")
	allowed(asA, peerView+"notes", ViewRequest{Offer: "v=0"}, "ws-a viewing its app")
	if info, err := b.client.App(ctx, "mine"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("ws-b's own app after the attempts: %+v %v", info, err)
	}

	// ws-b's daemon restarts (its apps keep running); it still knows
	// whose notes is.
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	b.start(t)
	defer b.stop(t)
	waitPeer(t, a, "ws-b", true, 15*time.Second)
	refused(c, peerView+"notes", ViewRequest{Offer: "v=0"}, "ws-c viewing ws-a's app after ws-b restarted")
	allowed(asA, peerView+"notes", ViewRequest{Offer: "v=0"}, "ws-a viewing its app after ws-b restarted")
	info, err := a.client.BringBack(ctx, "notes")
	if err != nil || info.State != engine.StateRunning {
		t.Fatalf("ws-a bringing its app back: %+v %v", info, err)
	}
	// Back here, ws-b keeps no record: ws-a may not view "notes" there.
	code, _ := asA.post(t, b, peerView+"notes", ViewRequest{Offer: "v=0"})
	if code != http.StatusNotFound {
		t.Fatalf("viewing on ws-b an app that left it: %d", code)
	}
}

// loadIdentity reads the identity of w's daemon from its state dir.
func loadIdentity(t *testing.T, w *workstation) *discovery.Identity {
	t.Helper()
	id, err := discovery.LoadOrCreateIdentity(filepath.Join(w.dir, "state", "identity"), w.name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
