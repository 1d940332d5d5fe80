//go:build integration

package migration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/stream/fb"
)

type side struct {
	eng  *engine.Engine
	work string
}

func newSide(t *testing.T) side {
	t.Helper()
	dir := testutil.StateDir(t)
	e, err := engine.New(engine.Config{StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range e.List() {
			e.Stop(context.Background(), a.Name)
		}
		e.Close()
	})
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o700)
	return side{eng: e, work: work}
}

// fault lets a test break the wire: it sees every request to the receiver.
type fault func(w http.ResponseWriter, r *http.Request) bool

func serve(t *testing.T, rv *Receiver, f fault) Peer {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f != nil && f(w, r) {
			return
		}
		rv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return Peer{HTTP: srv.Client(), Base: srv.URL, Name: "workstation-b"}
}

func screen(t *testing.T, e *engine.Engine, name string) []byte {
	t.Helper()
	var last []byte
	for i := 0; i < 40; i++ {
		img, err := screenshotOf(e, name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(img.Pix, last) {
			return last
		}
		last = img.Pix
		time.Sleep(150 * time.Millisecond)
	}
	t.Fatal("screen never settled")
	return nil
}

func runXterm(t *testing.T, s side) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.eng.Run(ctx, engine.Spec{User: appUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	// Type only once the shell drew its prompt (a few hundred dark pixels
	// inside xterm's border): keys typed earlier are echoed twice.
	deadline := time.Now().Add(30 * time.Second)
	for {
		{
			if img, err := screenshotOf(s.eng, "notes"); err == nil {
				if ink := fb.Ink(img, image.Rect(4, 3, 300, 16)); ink > 150 && ink < 1800 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell in xterm drew no prompt within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := s.eng.Exec(ctx, "notes", "xdotool", "mousemove", "20", "20", "type", "--delay", "10", "unsaved"); err != nil {
		t.Fatalf("type: %v %s", err, out)
	}
}

func TestSendOverHTTP(t *testing.T) {
	a, b := newSide(t), newSide(t)
	runXterm(t, a)
	var (
		mu       sync.Mutex
		received []string
	)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work, Progress: func(_ Offer, phase string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(received) == 0 || received[len(received)-1] != phase {
			received = append(received, phase)
		}
	}}
	peer := serve(t, rv, nil)
	screen(t, a.eng, "notes") // settled: nothing left queued for the X server
	var phases []string
	var before []byte // the source's last screen: taken while it is frozen
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	res, err := s.Send(context.Background(), "notes", peer, func(p Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
			if p.Phase == PhaseFinal {
				before = screen(t, a.eng, "notes")
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("phases %v; downtime %v; sent %d bytes; %v", phases, res.Downtime, res.Bytes, res.Phases)
	if want := "request handles pre-copy freeze final restore done"; strings.Join(phases, " ") != want {
		t.Errorf("phases %v, want %s", phases, want)
	}
	mu.Lock()
	if want := "request pre-copy final restore done"; strings.Join(received, " ") != want {
		t.Errorf("the receiver reported phases %v, want %s", received, want)
	}
	mu.Unlock()
	if _, err := a.eng.Get("notes"); err == nil {
		t.Fatal("the source still has the app after the handoff")
	}
	if !bytes.Equal(before, screen(t, b.eng, "notes")) {
		t.Fatal("the destination's screen differs from the source's")
	}
	if rv.Pending() != 0 {
		t.Fatal("the receiver keeps a finished handoff")
	}
	leftovers, _ := os.ReadDir(b.work)
	if len(leftovers) != 0 {
		t.Fatalf("the receiver left %d entries in its work dir", len(leftovers))
	}
}

// assertStillHere checks that a failed handoff left the app running at the
// source, nothing at the destination, and no staging files anywhere.
func assertStillHere(t *testing.T, a, b side, rv *Receiver) {
	t.Helper()
	info, err := a.eng.Get("notes")
	if err != nil || info.State != engine.StateRunning {
		t.Fatalf("after a failed handoff the source app is %+v, %v; want running", info, err)
	}
	if out, err := a.eng.Exec(context.Background(), "notes", "xdotool", "mousemove", "20", "20", "type", "x"); err != nil {
		t.Fatalf("the app does not take input after the rollback: %v %s", err, out)
	}
	if _, err := b.eng.Get("notes"); err == nil {
		t.Fatal("the destination has the app after a failed handoff")
	}
	if rv.Pending() != 0 {
		t.Fatal("the receiver keeps a failed handoff")
	}
	for _, dir := range []string{a.work, b.work} {
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%s has %d leftover entries", dir, len(ents))
		}
	}
}

// cutLinkOn drops the connection of any request whose path ends in suffix.
func cutLinkOn(suffix string) func(*int32) fault {
	return func(*int32) fault {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, suffix) {
				return false
			}
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return true
		}
	}
}

func TestSendFaults(t *testing.T) {
	tests := []struct {
		name    string
		accept  func(context.Context, Offer) error
		fault   func(calls *int32) fault
		wantErr string
	}{
		{
			name:    "declined",
			accept:  func(context.Context, Offer) error { return RefuseError(RefusedDeclined, "the user declined") },
			wantErr: "declined",
		},
		{
			name: "corrupt piece in the final round",
			fault: func(*int32) fault {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if strings.HasSuffix(r.URL.Path, "/final/delta") {
						data, _ := io.ReadAll(r.Body)
						if len(data) > 100 {
							data[len(data)-1] ^= 0xff // in the last piece
						}
						r.Body = io.NopCloser(bytes.NewReader(data))
					}
					return false
				}
			},
			wantErr: "checksum",
		},
		{
			name:    "link cut during the final round",
			fault:   cutLinkOn("/final/delta"),
			wantErr: "connection",
		},
		{
			name:    "link cut during pre-copy",
			fault:   cutLinkOn("/pre/pieces"),
			wantErr: "connection",
		},
		{
			// The destination checks it got at least what it lacks.
			name: "the source names too few pieces",
			fault: func(*int32) fault {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if strings.HasSuffix(r.URL.Path, "/final/delta") {
						diff, _, err := readDeltaHeader(r.Body, maxJSONBody)
						if err != nil {
							t.Errorf("read the final round: %v", err)
						}
						header, _ := deltaHeader(diff, nil)
						r.Body = io.NopCloser(bytes.NewReader(header))
					}
					return false
				}
			},
			wantErr: "out of step",
		},
		{
			name:    "link cut while pages stream",
			fault:   cutLinkOn("/pre/stream"),
			wantErr: "connection",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newSide(t), newSide(t)
			runXterm(t, a)
			rv := &Receiver{Engine: b.eng, WorkDir: b.work, Accept: tt.accept}
			var calls int32
			var f fault
			if tt.fault != nil {
				f = tt.fault(&calls)
			}
			peer := serve(t, rv, f)
			s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
			_, err := s.Send(context.Background(), "notes", peer, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
			var re *RefusedError
			if tt.name == "declined" && !errors.As(err, &re) {
				t.Fatalf("a declined offer is not a RefusedError: %v", err)
			}
			_ = atomic.LoadInt32(&calls)
			assertStillHere(t, a, b, rv)
		})
	}
}

// TestCorruptStreamedPagesAreSentAgain: every page streamed ahead of the
// first index arrives damaged; the index finds none of them whole, so all
// go again as checked pieces, and the app arrives intact.
func TestCorruptStreamedPagesAreSentAgain(t *testing.T) {
	a, b := newSide(t), newSide(t)
	runXterm(t, a)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	var streamed, resent atomic.Int64
	peer := serve(t, rv, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/pre/stream"):
			data, _ := io.ReadAll(r.Body)
			// Records: name length, name, offset, data length, data.
			for at := 0; at+2 <= len(data); {
				name := int(binary.BigEndian.Uint16(data[at:]))
				if name == 0 {
					break
				}
				start := at + 2 + name + 12
				size := int(binary.BigEndian.Uint32(data[start-4:]))
				for page := start; page < start+size; page += 4096 {
					data[page+7] ^= 0x5a
				}
				streamed.Add(int64(size))
				at = start + size
			}
			r.Body = io.NopCloser(bytes.NewReader(data))
		case strings.HasSuffix(r.URL.Path, "/pre/pieces"):
			data, _ := io.ReadAll(r.Body)
			resent.Add(int64(len(data)))
			r.Body = io.NopCloser(bytes.NewReader(data))
		}
		return false
	})
	screen(t, a.eng, "notes")
	var before []byte
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	if _, err := s.Send(context.Background(), "notes", peer, func(p Progress) {
		if p.Phase == PhaseFinal && before == nil {
			before = screen(t, a.eng, "notes")
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("streamed %d bytes of pages, all damaged; the first round's pieces then carried %d bytes", streamed.Load(), resent.Load())
	if streamed.Load() < 1<<20 {
		t.Fatalf("only %d bytes streamed", streamed.Load())
	}
	// Repeated pages go once, so fewer bytes may be resent than streamed,
	// but far more than the few files that are not page images.
	if resent.Load() < streamed.Load()/2 {
		t.Errorf("%d bytes of damaged pages streamed, only %d sent again", streamed.Load(), resent.Load())
	}
	if !bytes.Equal(before, screen(t, b.eng, "notes")) {
		t.Fatal("the destination's screen differs from the source's")
	}
	if out, err := b.eng.Exec(context.Background(), "notes", "xdotool", "mousemove", "20", "20", "type", "x"); err != nil {
		t.Fatalf("the app does not take input after the handoff: %v %s", err, out)
	}
}

// TestTwoHandoffsAtOnce: two apps leave for the same peer at the same time;
// both arrive, and nothing is left behind on either side.
func TestTwoHandoffsAtOnce(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ctx := context.Background()
	for _, name := range []string{"one", "two"} {
		if _, err := a.eng.Run(ctx, engine.Spec{User: appUser(t), Name: name, Args: []string{"xclock", "-update", "1"}, Width: 320, Height: 240}); err != nil {
			t.Fatal(err)
		}
	}
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	peer := serve(t, rv, nil)
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	errs := make(chan error, 2)
	for _, name := range []string{"one", "two"} {
		go func() {
			_, err := s.Send(ctx, name, peer, nil)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("send: %v", err)
		}
	}
	for _, name := range []string{"one", "two"} {
		if info, err := b.eng.Get(name); err != nil || info.State != engine.StateRunning {
			t.Errorf("%s on the destination: %+v, %v", name, info, err)
		}
		if _, err := a.eng.Get(name); err == nil {
			t.Errorf("%s is still on the source", name)
		}
	}
	if rv.Pending() != 0 {
		t.Error("the receiver keeps finished handoffs")
	}
	if left, _ := os.ReadDir(b.work); len(left) != 0 {
		t.Errorf("the receiver left %d entries in its work dir", len(left))
	}
	if left, _ := os.ReadDir(a.work); len(left) != 0 {
		t.Errorf("the sender left %d entries in its work dir", len(left))
	}
}

// TestRestoreFailsOnDestination: the restore on the destination fails (here
// an app of the same name appears there between the offer and the commit);
// the source thaws and keeps running, the destination keeps nothing of it.
func TestRestoreFailsOnDestination(t *testing.T) {
	a, b := newSide(t), newSide(t)
	runXterm(t, a)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	ctx := context.Background()
	peer := serve(t, rv, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/commit") {
			if _, err := b.eng.Run(ctx, engine.Spec{User: appUser(t), Name: "notes", Args: []string{"xclock"}, Width: 200, Height: 200}); err != nil {
				t.Errorf("run the conflicting app: %v", err)
			}
		}
		return false
	})
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	_, err := s.Send(ctx, "notes", peer, nil)
	if err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("err = %v, want a failed restore", err)
	}
	info, err := a.eng.Get("notes")
	if err != nil || info.State != engine.StateRunning {
		t.Fatalf("after a failed restore the source app is %+v, %v; want running", info, err)
	}
	if got, _ := b.eng.Get("notes"); len(got.Command) == 0 || got.Command[0] != "xclock" || got.State != engine.StateRunning {
		t.Errorf("the destination's own app was touched: %+v", got)
	}
	if rv.Pending() != 0 {
		t.Error("the receiver keeps the failed handoff")
	}
	if left, _ := os.ReadDir(b.work); len(left) != 0 {
		t.Errorf("the receiver left %d entries in its work dir", len(left))
	}
}

// smallDisk mounts a tmpfs of the given size over dir, unmounted (by its
// path) when the test ends.
func smallDisk(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "handoff-test-disk", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a small disk: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

// TestDestinationDiskFull: a destination without room refuses before
// anything is frozen; one whose disk fills during the transfer fails it.
// Either way the app keeps running at the source and nothing is left.
func TestDestinationDiskFull(t *testing.T) {
	t.Run("refused up front", func(t *testing.T) {
		a, b := newSide(t), newSide(t)
		smallDisk(t, b.work, "16m")
		runXterm(t, a)
		rv := &Receiver{Engine: b.eng, WorkDir: b.work}
		s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
		_, err := s.Send(context.Background(), "notes", serve(t, rv, nil), nil)
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != RefusedNoSpace {
			t.Fatalf("err = %v, want a no_space refusal", err)
		}
		assertStillHere(t, a, b, rv)
	})
	// The disk fills while the first round's pages stream, or later, when
	// the pieces that did not stream whole come.
	for _, during := range []string{"/pre/stream", "/pre/pieces"} {
		t.Run("fills during "+during, func(t *testing.T) {
			a, b := newSide(t), newSide(t)
			smallDisk(t, b.work, "512m")
			runXterm(t, a)
			rv := &Receiver{Engine: b.eng, WorkDir: b.work}
			filler := filepath.Join(b.work, "filler")
			var once sync.Once
			peer := serve(t, rv, func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, during) {
					once.Do(func() {
						// Something else takes the whole disk once the transfer runs.
						exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M").Run()
					})
				}
				return false
			})
			s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
			_, err := s.Send(context.Background(), "notes", peer, nil)
			os.Remove(filler)
			if err == nil || !strings.Contains(err.Error(), "no space") {
				t.Fatalf("err = %v, want one saying there is no space", err)
			}
			assertStillHere(t, a, b, rv)
		})
	}
}

// TestUpperDirFilesArrive: files the app wrote (its upper dir), including
// one it still holds open, arrive with it and keep their content.
func TestUpperDirFilesArrive(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ctx := context.Background()
	script := `mkdir -p /tmp/work && echo "draft 1" > /tmp/work/notes.txt && exec 3>>/tmp/work/journal.log && echo started >&3 && exec xclock -update 1`
	if _, err := a.eng.Run(ctx, engine.Spec{User: appUser(t), Name: "writer", Args: []string{"sh", "-c", script}, Width: 320, Height: 240}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	if _, err := s.Send(ctx, "writer", serve(t, rv, nil), nil); err != nil {
		t.Fatal(err)
	}
	info, err := b.eng.Get("writer")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("/proc", fmt.Sprint(info.PID), "root")
	for file, want := range map[string]string{"tmp/work/notes.txt": "draft 1\n", "tmp/work/journal.log": "started\n"} {
		got, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || string(got) != want {
			t.Errorf("/%s on the destination: %q, %v; want %q", file, got, err, want)
		}
	}
	// The restored app still holds the journal it had open.
	m, err := b.eng.Handles(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, h := range m.Handles {
		held = held || strings.HasSuffix(h.Path, "/tmp/work/journal.log")
	}
	if !held {
		t.Error("the restored app no longer holds /tmp/work/journal.log open")
	}
}

// mountsUnder counts the host's mounts below dir.
func mountsUnder(dir string) int {
	data, _ := os.ReadFile("/proc/1/mountinfo")
	return strings.Count(string(data), " "+dir+"/")
}

func openFDs() int {
	fds, _ := os.ReadDir("/proc/self/fd")
	return len(fds)
}

// TestRoundTrips hands an app back and forth 20 times (40 handoffs) and
// checks that neither side accumulates mounts, apps, staging files or fds.
func TestRoundTrips(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ctx := context.Background()
	fdsBefore := openFDs()
	if _, err := a.eng.Run(ctx, engine.Spec{User: appUser(t), Name: "clock", Args: []string{"xclock", "-update", "1"}, Width: 240, Height: 240}); err != nil {
		t.Fatal(err)
	}
	sides := [2]side{a, b}
	peers := [2]Peer{
		serve(t, &Receiver{Engine: a.eng, WorkDir: a.work}, nil),
		serve(t, &Receiver{Engine: b.eng, WorkDir: b.work}, nil),
	}
	senders := [2]*Sender{
		{Engine: a.eng, From: "workstation-a", WorkDir: a.work},
		{Engine: b.eng, From: "workstation-b", WorkDir: b.work},
	}
	var downtime []time.Duration
	for i := 0; i < 40; i++ {
		from, to := i%2, 1-i%2
		res, err := senders[from].Send(ctx, "clock", peers[to], nil)
		if err != nil {
			t.Fatalf("handoff %d: %v", i+1, err)
		}
		downtime = append(downtime, res.Downtime)
		if n := len(sides[from].eng.List()); n != 0 {
			t.Fatalf("handoff %d: the source still lists %d apps", i+1, n)
		}
	}
	t.Logf("40 handoffs, downtime first %v, last %v", downtime[0], downtime[len(downtime)-1])
	info, err := a.eng.Get("clock")
	if err != nil || info.State != engine.StateRunning {
		t.Fatalf("after 20 round trips the app is %+v, %v", info, err)
	}
	stateA := filepath.Join(filepath.Dir(a.work), "state")
	stateB := filepath.Join(filepath.Dir(b.work), "state")
	// The app's overlay root, its network namespace and that namespace's sysfs.
	if m := mountsUnder(stateA); m != 3 {
		t.Errorf("ws-a has %d mounts for its one app, want 3", m)
	}
	if m := mountsUnder(stateB); m != 0 {
		t.Errorf("ws-b keeps %d mounts", m)
	}
	for _, s := range sides {
		if ents, _ := os.ReadDir(s.work); len(ents) != 0 {
			t.Errorf("%s keeps %d staging entries", s.work, len(ents))
		}
	}
	if apps, _ := os.ReadDir(filepath.Join(stateB, "apps")); len(apps) != 0 {
		t.Errorf("ws-b keeps %d app directories", len(apps))
	}
	if fds := openFDs(); fds > fdsBefore+10 {
		t.Errorf("open fds went from %d to %d over 40 handoffs", fdsBefore, fds)
	}
}

// baseWithout builds a root for a receiver's base-file checks that is this
// machine's / except the top-level directory skip: real directories are
// bind-mounted (unmounted by path when the test ends), top-level symlinks
// copied. It stands in for a workstation whose system lacks some files.
func baseWithout(t *testing.T, skip string) string {
	t.Helper()
	base := t.TempDir()
	ents, err := os.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := e.Name()
		src, dst := "/"+name, filepath.Join(base, name)
		switch {
		case name == skip || name == "proc" || name == "sys" || name == "tmp" || name == "run":
		case e.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(src)
			os.Symlink(target, dst)
		case e.IsDir():
			os.Mkdir(dst, 0o755)
			if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
				t.Fatalf("bind %s: %v %s", src, err, out)
			}
			t.Cleanup(func() { exec.Command("umount", dst).Run() })
		}
	}
	return base
}

// TestMissingFileTravels: the app holds open a system file the destination
// lacks; the handles sync finds it missing there and it travels with the
// app, so the restored app finds it in place.
func TestMissingFileTravels(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("/srv", "handoff-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // the app's user reads it
	data := filepath.Join(dir, "dictionary.txt")
	if err := os.WriteFile(data, []byte("words only workstation-a has\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "exec 3<" + data + " && exec xclock -update 1"
	if _, err := a.eng.Run(ctx, engine.Spec{User: appUser(t), Name: "reader", Args: []string{"sh", "-c", script}, Width: 240, Height: 240}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work, Base: baseWithout(t, "srv")}
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	if _, err := s.Send(ctx, "reader", serve(t, rv, nil), nil); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(filepath.Dir(b.work), "state", "apps", "reader", "upper")
	got, err := os.ReadFile(filepath.Join(upper, data))
	if err != nil || string(got) != "words only workstation-a has\n" {
		t.Fatalf("the file the destination lacked: %q, %v", got, err)
	}
	// Files the destination has were not sent: its upper dir holds no libraries.
	if libs, _ := filepath.Glob(filepath.Join(upper, "usr", "lib", "*", "libX11*")); len(libs) != 0 {
		t.Errorf("files the destination has were sent anyway: %v", libs)
	}
}

// TestBlockingHandleStopsTheSend: a process outside the container holds a
// connection to the app's X server. The send is refused before anything is
// frozen, names the handle, and the app keeps running.
func TestBlockingHandleStopsTheSend(t *testing.T) {
	a, b := newSide(t), newSide(t)
	runXterm(t, a)
	dial := func() (net.Conn, error) { return a.eng.DialDisplay(context.Background(), "notes") }
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(300 * time.Millisecond) // let Xvfb accept it
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	var phases []string
	_, err = s.Send(context.Background(), "notes", serve(t, rv, nil), func(p Progress) { phases = append(phases, p.Phase) })
	if !errors.Is(err, engine.ErrBlocked) || !strings.Contains(err.Error(), "X11-unix/X1") {
		t.Fatalf("err = %v, want ErrBlocked naming the X socket", err)
	}
	for _, p := range phases {
		if p == PhaseFreeze || p == PhaseFinal {
			t.Fatalf("the app was frozen although a handle blocks: phases %v", phases)
		}
	}
	assertStillHere(t, a, b, rv)
}
