//go:build integration

package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/stream/fb"
)

// TestPeerByAddress: two workstations on a network whose mDNS packets
// nftables drops see nobody; ws-a adds ws-b by its address, they pair
// (both users confirm the code, as administrators), ws-a hands an app over
// with the text typed into it, and brings it back: ws-b reaches ws-a at
// the address ws-a's hellos came from. Removing the address keeps the
// trust and takes ws-b off the network view.
func TestPeerByAddress(t *testing.T) {
	net := testnet.New(t, "a", "b")
	for _, h := range net.Hosts() {
		if err := h.DropMDNS(); err != nil {
			t.Fatal(err)
		}
	}
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer a.stop(t)
	defer b.stop(t)
	ctx := context.Background()
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)

	time.Sleep(2 * time.Second) // browse cycles of 0.8 s: mDNS, were it passing, would have shown them
	for _, w := range []*workstation{a, b} {
		if ps, _ := w.client.Peers(ctx); len(ps) != 0 {
			t.Fatalf("%s sees %+v with mDNS dropped: the test proves nothing", w.name, ps)
		}
	}
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 640, Height: 480}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err == nil || !strings.Contains(err.Error(), "no such peer") {
		t.Fatalf("a send to a peer nobody found: %v", err)
	}

	// ws-a adds ws-b by address: found at once, not trusted.
	added, err := a.client.AddPeer(ctx, b.host.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if v := added.Peer; v == nil || !added.Address.Online || v.ID != idB.ID || v.Name != "ws-b" || v.Trusted || !v.Online ||
		!slices.Contains(v.Saved, b.host.Addr.String()+":7466") {
		t.Fatalf("adding ws-b's address: %+v, peer %+v", added.Address, added.Peer)
	}
	t.Logf("ws-b answered at %s", added.Address.Addr)
	var out, errOut bytes.Buffer
	if code := mainWith([]string{"--socket", a.client.Socket, "peers"}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "Saved addresses:\n  "+added.Address.Addr+"  ws-b ("+idB.Short+"), answering") {
		t.Fatalf("`handoff peers` on ws-a (exit %d):\n%s%s", code, out.String(), errOut.String())
	}
	waitPeer(t, b, "ws-a", true, 10*time.Second) // from ws-a's hello, verified
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("a send to a peer found by address but not paired: %v", err)
	}

	// Pairing, as for a device found by mDNS.
	pc, err := a.client.PairCode(ctx, "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	req := waitRequest(t, b, "pair")
	if req.Code != pc.Code || req.FromID != idA.ID {
		t.Fatalf("ws-b shows %+v, ws-a code %s", req, pc.Code)
	}
	if err := b.client.Answer(ctx, req.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Pair(ctx, "ws-b", pc.Code); err != nil {
		t.Fatal(err)
	}
	for _, trust := range []struct {
		w  *workstation
		id string
	}{{b, idA.ID.String()}, {a, idB.ID.String()}} { // take handoffs without a prompt
		if _, err := trust.w.client.Trust(ctx, trust.id, TrustRequest{AutoAccept: true}); err != nil {
			t.Fatal(err)
		}
	}

	// A handoff with typed text, and back.
	typeInto(t, a, "notes", "found by address")
	before := settledShot(t, a, "notes")
	res, err := a.client.Send(ctx, "notes", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("handoff ws-a → ws-b by address: downtime %v, %d bytes", res.Downtime, res.Bytes)
	if after := settledShot(t, b, "notes"); !bytes.Equal(before, after) {
		n, where := fb.Diff(decodePNG(t, before), decodePNG(t, after))
		t.Errorf("ws-b's screen differs from ws-a's last one: %d pixels in %v", n, where)
	}
	if _, err := a.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("ws-a still has the app: %v", err)
	}
	info, err := a.client.BringBack(ctx, "notes")
	if err != nil || info.State != engine.StateRunning {
		t.Fatalf("bringing notes back from ws-b, which knows ws-a only from its hellos: %+v %v", info, err)
	}

	// Removing the address: the trust stays, ws-b is no longer looked for.
	gone, err := a.client.RemovePeer(ctx, "ws-b")
	if err != nil || len(gone) != 1 {
		t.Fatalf("removing ws-b's address: %+v %v", gone, err)
	}
	ps, _ := a.client.Peers(ctx)
	if len(ps) != 1 || ps[0].ID != idB.ID || !ps[0].Trusted || ps[0].Online || len(ps[0].Saved) != 0 {
		t.Fatalf("ws-a's peers after removing ws-b's address: %+v", ps)
	}
	if addrs, _ := a.client.PeerAddresses(ctx); len(addrs) != 0 {
		t.Fatalf("saved addresses after the removal: %+v", addrs)
	}
}

// TestHandoffRefusedForCPU: ws-b's daemon believes its CPU lacks an
// instruction set this machine's CPU has (the offer carries the real
// features). The send is refused in words naming the feature, before
// anything is frozen: the app never leaves the running state on ws-a, and
// no phase past the offer starts.
func TestHandoffRefusedForCPU(t *testing.T) {
	local, err := migration.LocalPlatform()
	if err != nil {
		t.Fatal(err)
	}
	var lacking string
	for _, f := range local.CPU.Features {
		if _, ok := migration.InstructionFlag(runtime.GOARCH, f); ok && lacking != "avx512f" {
			lacking = f // AVX-512 when this CPU has it
		}
	}
	if lacking == "" {
		t.Fatalf("this CPU lists no instruction sets: %+v", local.CPU)
	}
	family, _ := migration.InstructionFlag(runtime.GOARCH, lacking)
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b", "HANDOFF_TEST_CPU_LACKS="+lacking)
	defer a.stop(t)
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true})
	b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true})
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 640, Height: 480}); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, a, "notes")

	evCtx, stop := context.WithCancel(ctx)
	events, err := a.client.Events(evCtx)
	if err != nil {
		t.Fatal(err)
	}
	_, sendErr := a.client.Send(ctx, "notes", "ws-b")
	time.Sleep(500 * time.Millisecond) // the last events reach the stream
	stop()
	want := "ws-b's CPU lacks " + family
	if sendErr == nil || !strings.Contains(sendErr.Error(), want) || !strings.Contains(sendErr.Error(), lacking) ||
		!strings.Contains(sendErr.Error(), "which notes may use") {
		t.Fatalf("send to a CPU without %s: %v; want a refusal saying %q", lacking, sendErr, want)
	}
	t.Logf("refused: %v", sendErr)
	var states, phases []string
	for ev := range events {
		if ev.Type == EventApp && ev.App != nil && ev.App.Name == "notes" {
			states = append(states, string(ev.App.State))
		}
		if ev.Type == EventHandoff && ev.Handoff != nil && ev.Handoff.App == "notes" {
			phases = append(phases, ev.Handoff.Phase)
		}
	}
	for _, s := range states {
		if s != string(engine.StateRunning) {
			t.Errorf("notes went through %q on ws-a during the refused send (states %q)", s, states)
		}
	}
	for _, p := range phases {
		if p != migration.PhaseRequest && p != migration.PhaseRollback {
			t.Errorf("the refused send reached phase %q (phases %q)", p, phases)
		}
	}
	if !slices.Contains(phases, migration.PhaseRequest) {
		t.Errorf("no handoff events seen (%q): the event check proves nothing", phases)
	}
	if info, err := a.client.App(ctx, "notes"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("after the refusal notes is %+v, %v", info, err)
	}
	if _, err := b.client.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("ws-b has the app: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.dir, "state", "transfers")); len(ents) != 0 {
		t.Fatalf("ws-b keeps %d entries of a refused handoff", len(ents))
	}
}

// waitRunning waits until w lists app as running.
func waitRunning(t *testing.T, w *workstation, app string) {
	t.Helper()
	for i := 0; ; i++ {
		if info, err := w.client.App(context.Background(), app); err == nil && info.State == engine.StateRunning {
			return
		}
		if i > 200 {
			t.Fatalf("%s: %s does not run", w.name, app)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkDiscoveryByAddress is BenchmarkDiscovery on a network whose mDNS
// nftables drops, ws-a having ws-b's address saved: 20 times a new ws-b
// (new identity, same address) starts and stops; from its process start
// to ws-a listing it, and from its clean stop to ws-a showing it offline.
func BenchmarkDiscoveryByAddress(b *testing.B) {
	net := testnet.New(b, "a", "b")
	for _, h := range net.Hosts() {
		if err := h.DropMDNS(); err != nil {
			b.Fatal(err)
		}
	}
	a := startWorkstation(b, net.Host("a"), "ws-a")
	defer a.stop(b)
	if _, err := a.client.AddPeer(context.Background(), net.Host("b").Addr.String()); err != nil {
		b.Fatal(err)
	}
	var appear, leave []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		w := startWorkstation(b, net.Host("b"), "ws-b")
		id, err := w.client.ID(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		waitPeer(b, a, id.ID.String(), true, 20*time.Second)
		appear = append(appear, time.Since(start))
		stopped := time.Now()
		w.stop(b)
		waitPeer(b, a, id.ID.String(), false, 20*time.Second)
		leave = append(leave, time.Since(stopped))
	}
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*95/100].Milliseconds()), name+"-p95-ms")
	}
	report("appear", appear)
	report("leave", leave)
}
