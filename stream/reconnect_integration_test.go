//go:build integration

package stream

import (
	"context"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/handoff/handoff/internal/testnet"
)

// near says whether the decoded pixel at pt is the 0xRRGGBB colour, give
// or take what VP8 changes.
func near(img *image.RGBA, pt image.Point, rgb uint32) bool {
	if img == nil || !pt.In(img.Rect) {
		return false
	}
	c := img.RGBAAt(pt.X, pt.Y)
	want := [3]int{int(rgb >> 16 & 0xff), int(rgb >> 8 & 0xff), int(rgb & 0xff)}
	for i, got := range [3]int{int(c.R), int(c.G), int(c.B)} {
		if d := got - want[i]; d < -24 || d > 24 {
			return false
		}
	}
	return true
}

// udpMuxIn opens the socket a peer's ICE uses inside a workstation's
// network namespace.
func udpMuxIn(t testing.TB, h *testnet.Host) ice.UDPMux {
	t.Helper()
	var conn *net.UDPConn
	if err := h.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: h.Addr.AsSlice()})
		return err
	}); err != nil {
		t.Fatalf("UDP socket in %s: %v", h.Name, err)
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn})
	t.Cleanup(func() { mux.Close() })
	return mux
}

// states records what a viewer reports.
type states struct {
	mu   sync.Mutex
	list []ViewerState
}

func (s *states) add(st ViewerState) {
	s.mu.Lock()
	s.list = append(s.list, st)
	s.mu.Unlock()
}

// since returns the states reported after the first n.
func (s *states) since(n int) []ViewerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ViewerState(nil), s.list[n:]...)
}

func (s *states) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.list)
}

// lostThenBack says whether states report the picture going away and then
// streaming again.
func lostThenBack(list []ViewerState) bool {
	lost := false
	for _, st := range list {
		if !st.Streaming && st.Err != nil {
			lost = true
		}
		if lost && st.Streaming {
			return true
		}
	}
	return false
}

// dropPackets makes the workstations drop (on) or take again (off) every
// packet that reaches them: a blip that loses what is sent during it, where
// a pulled cable leaves packets queued to go out once it is back.
func dropPackets(on bool, hosts ...*testnet.Host) error {
	op := "-D"
	if on {
		op = "-I"
	}
	for _, h := range hosts {
		if out, err := h.Command(context.Background(), "iptables", "-w", op, "INPUT", "-i", "eth0", "-j", "DROP").CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s in %s: %v: %s", op, h.Name, err, out)
		}
	}
	return nil
}

// TestViewerReconnectsAfterBlip streams between two workstations, the app
// on b and the viewer on a, signalling over HTTP between them, and breaks
// the link three times: 1 s of lost packets, too short for ICE to call the
// link lost; b's cable pulled for 3 s, which ICE rides out in the same
// connection; and for 9 s, after which the viewer must connect anew. Each
// time the screen changes while the link is down, and the viewer must show
// the change once it is back without anything else moving on the screen;
// after the longer cuts it must report losing the picture and getting it
// back; and it must show later changes.
func TestViewerReconnectsAfterBlip(t *testing.T) {
	n := testnet.New(t, "a", "b")
	a, b := n.Host("a"), n.Host("b")
	d := startDisplay(t, "640x480x24")
	box := image.Rect(0, 0, 200, 200)
	probe := image.Pt(100, 100)
	p := newPainter(t, d)
	p.fill(box, 0xd02020)

	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	host.udpMux = udpMuxIn(t, b)
	t.Cleanup(func() { host.Close() })

	// Signalling: b answers offers over HTTP; a's requests leave from a.
	var ln net.Listener
	if err := b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", b.Addr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offer, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer, err := host.Answer(r.Context(), string(offer))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, answer)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	transport := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := a.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}
	var signals atomic.Int32
	signal := func(ctx context.Context, offer string) (string, error) {
		signals.Add(1)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/", strings.NewReader(offer))
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("signal: %s: %s", resp.Status, body)
		}
		return string(body), nil
	}

	v := NewViewer(signal, nil)
	v.udpMux = udpMuxIn(t, a)
	got := newFrames(v)
	var st states
	v.OnState(st.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); v.Close(); <-done })

	shows := func(rgb uint32) func() bool {
		return func() bool { img, _ := got.snapshot(); return near(img, probe, rgb) }
	}
	waitFor(t, "the first picture from b", 20*time.Second, shows(0xd02020))

	colours := []uint32{0x20c040, 0x2040e0, 0xe0c020, 0x20e0e0, 0xc040c0, 0x808020}
	for i, blip := range []struct {
		cut     time.Duration
		lossy   bool // packets dropped, rather than the cable pulled
		lost    bool // whether the viewer must report the picture lost
		newConn bool // whether the viewer must have signalled again
	}{{time.Second, true, false, false}, {3 * time.Second, false, true, false}, {9 * time.Second, false, true, true}} {
		during, after := colours[2*i], colours[2*i+1]
		mark, signalled := st.len(), signals.Load()
		link := b.SetLink
		if blip.lossy {
			link = func(up bool) error { return dropPackets(!up, a, b) }
		}
		if err := link(false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(blip.cut / 2)
		p.fill(box, during) // frames that cannot arrive
		time.Sleep(blip.cut - blip.cut/2)
		if err := link(true); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		waitFor(t, fmt.Sprintf("the change made during the %v cut to show", blip.cut), 20*time.Second, shows(during))
		t.Logf("%v cut: picture current %v after the cable came back", blip.cut, time.Since(back).Round(10*time.Millisecond))
		p.fill(box, after)
		waitFor(t, fmt.Sprintf("a change after the %v cut to show", blip.cut), 10*time.Second, shows(after))

		reported := st.since(mark)
		if blip.lost && !lostThenBack(reported) {
			t.Errorf("%v cut: states %+v; want the picture reported lost and then streaming again", blip.cut, reported)
		}
		if again := signals.Load() > signalled; again != blip.newConn {
			t.Errorf("%v cut: viewer connected anew: %v, want %v", blip.cut, again, blip.newConn)
		}
	}
}
