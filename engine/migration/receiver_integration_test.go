//go:build integration

package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/delta"
)

// rawPeer talks to a receiver the way a hostile peer could: any request,
// any body.
type rawPeer struct {
	t    *testing.T
	base string
}

func newRawPeer(t *testing.T, rv *Receiver) rawPeer {
	srv := httptest.NewServer(rv)
	t.Cleanup(srv.Close)
	return rawPeer{t: t, base: srv.URL}
}

// do sends body to path and returns the status and the refusal, if any.
func (p rawPeer) do(method, path string, body []byte) (int, Refusal, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var r Refusal
	if resp.StatusCode >= 300 {
		_ = json.Unmarshal(data, &r)
	}
	return resp.StatusCode, r, data
}

// offer sends an offer of an app named name using memory bytes and
// returns the handoff's id, or the refusal.
func (p rawPeer) offer(s side, name string, memory int64) (string, int, Refusal) {
	p.t.Helper()
	criu, err := s.eng.Criu(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	plat, err := LocalPlatform()
	if err != nil {
		p.t.Fatal(err)
	}
	o := Offer{Version: Version, From: "a hostile peer", Criu: criu, Arch: runtime.GOARCH, MemoryBytes: memory,
		Kernel: plat.Kernel, CPU: plat.CPU}
	o.Spec = engine.Spec{Name: name, Args: []string{"xclock"}, User: appUser(p.t)}
	body, _ := json.Marshal(o)
	status, r, data := p.do(http.MethodPost, "/offer", body)
	if status != http.StatusOK {
		return "", status, r
	}
	var acc Accepted
	if err := json.Unmarshal(data, &acc); err != nil || acc.ID == "" {
		p.t.Fatalf("offer accepted with %q: %v", data, err)
	}
	return acc.ID, status, r
}

// TestOffersReserveRoom: an accepted offer holds the room it needs, so a
// second one that would need the same room is refused, until the first
// ends; each is checked against what is free, not trusted.
func TestOffersReserveRoom(t *testing.T) {
	b := newSide(t)
	smallDisk(t, b.work, "600m")
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	peer := newRawPeer(t, rv)
	const memory = 150 << 20 // reserves 3×150 + 64 MB of the 600
	first, status, r := peer.offer(b, "first", memory)
	if first == "" {
		t.Fatalf("first offer refused: %d %+v", status, r)
	}
	if _, status, r := peer.offer(b, "second", memory); status != http.StatusInsufficientStorage || r.Code != RefusedNoSpace {
		t.Fatalf("a second offer for the same room: %d %+v, want a no_space refusal", status, r)
	}
	if _, status, r := peer.offer(b, "huge", 1<<62); r.Code != RefusedNoSpace {
		t.Fatalf("an offer declaring 4 EiB: %d %+v, want a no_space refusal", status, r)
	}
	if status, _, _ := peer.do(http.MethodDelete, "/"+first, nil); status != http.StatusNoContent {
		t.Fatalf("drop the first handoff: %d", status)
	}
	second, status, r := peer.offer(b, "second", memory)
	if second == "" {
		t.Fatalf("once the first handoff ended, the second offer is refused: %d %+v", status, r)
	}
	peer.do(http.MethodDelete, "/"+second, nil)
	if rv.Pending() != 0 {
		t.Errorf("%d handoffs left", rv.Pending())
	}
}

// TestOffersBeyondTheLimitAreBusy: only maxIncoming handoffs at once,
// offers still waiting for the user's answer included; the next is
// refused as busy, in words.
func TestOffersBeyondTheLimitAreBusy(t *testing.T) {
	b := newSide(t)
	answer := make(chan struct{})
	var asked sync.WaitGroup
	asked.Add(maxIncoming)
	var prompts atomic.Int32
	rv := &Receiver{Engine: b.eng, WorkDir: b.work, Accept: func(ctx context.Context, o Offer) error {
		switch n := prompts.Add(1); {
		case n <= maxIncoming:
			asked.Done()
			<-answer // the user has not answered yet
		case !closed(answer):
			t.Errorf("the user was asked about offer %d while %d offers wait", n, maxIncoming)
		}
		return nil
	}}
	peer := newRawPeer(t, rv)
	ids := make(chan string, maxIncoming)
	for i := range maxIncoming {
		go func() {
			id, status, r := peer.offer(b, fmt.Sprintf("app-%d", i), 1<<20)
			if id == "" {
				t.Errorf("offer %d refused: %d %+v", i, status, r)
			}
			ids <- id
		}()
	}
	asked.Wait()
	_, status, r := peer.offer(b, "one-more", 1<<20)
	close(answer)
	if status != http.StatusServiceUnavailable || r.Code != RefusedBusy || r.Error == "" {
		t.Errorf("offer %d while %d wait: %d %+v, want a busy refusal in words", maxIncoming+1, maxIncoming, status, r)
	}
	for range maxIncoming {
		if id := <-ids; id != "" {
			peer.do(http.MethodDelete, "/"+id, nil)
		}
	}
	if id, status, r := peer.offer(b, "later", 1<<20); id == "" {
		t.Errorf("an offer once the others ended: %d %+v", status, r)
	} else {
		peer.do(http.MethodDelete, "/"+id, nil)
	}
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestImageLargerThanItsOfferIsRefused: an index that declares more than
// the room its offer reserved (here two files of 64 GiB, a few MB of
// index) is refused before anything is written, and the handoff ends.
func TestImageLargerThanItsOfferIsRefused(t *testing.T) {
	b := newSide(t)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	peer := newRawPeer(t, rv)
	id, status, r := peer.offer(b, "small", 10<<20)
	if id == "" {
		t.Fatalf("offer refused: %d %+v", status, r)
	}
	ix := &delta.Index{}
	for _, name := range []string{"core-1.img", "mm-1.img"} {
		ix.Files = append(ix.Files, delta.File{Name: name, Size: delta.MaxFileSize, Mode: 0o600,
			Pieces: make(delta.Hashes, delta.MaxFileSize/delta.MaxChunkSize)})
	}
	body, _ := ix.MarshalBinary()
	start := time.Now()
	status, r, _ = peer.do(http.MethodPost, "/"+id+"/pre/index", body)
	if status != http.StatusInsufficientStorage || r.Code != RefusedNoSpace {
		t.Fatalf("an index of 128 GiB after an offer of 10 MB: %d %+v, want a no_space refusal", status, r)
	}
	t.Logf("refused in %v: %s", time.Since(start), r.Error)
	if rv.Pending() != 0 {
		t.Error("the receiver keeps the handoff")
	}
}
