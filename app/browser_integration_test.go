//go:build integration

package app

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/handoff/handoff/internal/testutil"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/stream/fb"
)

// chromiumFlags are from PLATFORM.md; mDNS host names would hide the
// namespace's address from the daemon, which resolves no mDNS.
var chromiumFlags = []string{
	"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--no-first-run",
	"--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
	"--remote-debugging-port=0", "--remote-allow-origins=*",
}

// cdp is a minimal Chrome DevTools Protocol client: enough to evaluate
// JavaScript in a page.
type cdp struct {
	ws *websocket.Conn
	id int
}

func (c *cdp) eval(expr string) (string, error) {
	c.id++
	req := map[string]any{"id": c.id, "method": "Runtime.evaluate", "params": map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}}
	if err := websocket.JSON.Send(c.ws, req); err != nil {
		return "", err
	}
	for {
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Result struct {
					Value any `json:"value"`
				} `json:"result"`
			} `json:"result"`
			Error *struct{ Message string } `json:"error"`
		}
		if err := websocket.JSON.Receive(c.ws, &resp); err != nil {
			return "", err
		}
		if resp.ID != c.id {
			continue // an event
		}
		if resp.Error != nil {
			return "", fmt.Errorf("cdp: %s", resp.Error.Message)
		}
		s, _ := resp.Result.Result.Value.(string)
		return s, nil
	}
}

// TestBrowserViewer: headless Chromium, a standard WebRTC client, opens the
// daemon's viewer page and shows the app; the picture it decodes matches the
// app's own screen.
func TestBrowserViewer(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatal("chromium is missing: make deps installs it")
	}
	net := testnet.New(t, "a")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	ctx := context.Background()
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm", "-geometry", "80x24+0+0"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	typeInto(t, a, "notes", "hello browser")
	web, err := a.client.Web(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	page := web.URL

	// Without the token the page is refused.
	probe := a.host.Command(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", strings.Split(web.URL, "?")[0])
	if out, _ := probe.Output(); string(out) != "403" {
		t.Errorf("the page without its token answered %q, want 403", out)
	}

	pageWS := openInChromium(t, a, page, "notes")
	// The test process is outside the namespace: relay the DevTools socket.
	frame, cursor := evalInNamespace(t, a, pageWS, 30*time.Second)
	// The video holds no pointer: the page draws the app's, sent as a PNG.
	if !strings.HasPrefix(cursor, `url("data:image/png;base64,`) {
		t.Errorf("the video's cursor is %.80q, want the app's as a data: PNG", cursor)
	}
	shot := decodePNG(t, settledShot(t, a, "notes"))
	got := decodePNG(t, frame)
	if got.Rect != shot.Rect {
		t.Fatalf("the browser shows %v, the app's screen is %v", got.Rect, shot.Rect)
	}
	p := fb.PSNR(shot, got)
	t.Logf("browser frame vs the app's screen: PSNR %.1f dB", p)
	if p < 30 {
		t.Errorf("the browser's picture does not match the app: PSNR %.1f dB < 30", p)
	}
}

// openInChromium opens page in a headless Chromium in w's namespace, which
// the test stops by PID, and returns the DevTools socket of the page
// (whose URL names app).
func openInChromium(t *testing.T, a *workstation, page, app string) string {
	t.Helper()
	ctx := context.Background()
	profile := t.TempDir()
	cmd := a.host.Command(ctx, "chromium", append(chromiumFlags, "--user-data-dir="+profile, page)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	devtools := regexp.MustCompile(`DevTools listening on ws://127\.0\.0\.1:(\d+)/`)
	port := ""
	sc := bufio.NewScanner(stderr)
	for port == "" && sc.Scan() {
		if m := devtools.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
		}
	}
	if port == "" {
		t.Fatal("chromium did not open its DevTools port")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	// DevTools listens inside ws-a's namespace: talk to it from there.
	var pageWS string
	deadline := time.Now().Add(20 * time.Second)
	for pageWS == "" && time.Now().Before(deadline) {
		out, _ := a.host.Command(ctx, "curl", "-s", "http://127.0.0.1:"+port+"/json/list").Output()
		var targets []struct{ Type, URL, WebSocketDebuggerURL string }
		json.Unmarshal(out, &targets)
		for _, tg := range targets {
			if tg.Type == "page" && strings.Contains(tg.URL, "app="+app) {
				pageWS = tg.WebSocketDebuggerURL
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pageWS == "" {
		t.Fatal("the viewer page did not open")
	}
	return pageWS
}

// evalInNamespace polls window.handoffFrame() in the page through DevTools,
// reached from inside the workstation's namespace, until a frame comes; it
// returns that and the video's CSS cursor then.
func evalInNamespace(t *testing.T, w *workstation, pageWS string, within time.Duration) (frame []byte, cursor string) {
	t.Helper()
	err := w.host.Do(func() error {
		ws, err := websocket.Dial(pageWS, "", "http://127.0.0.1/")
		if err != nil {
			return err
		}
		defer ws.Close()
		c := &cdp{ws: ws}
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			url, err := c.eval("window.handoffFrame ? window.handoffFrame() : ''")
			if err != nil {
				return err
			}
			if strings.HasPrefix(url, "data:image/png;base64,") {
				// A frame that has had a moment to converge.
				time.Sleep(1500 * time.Millisecond)
				url, err = c.eval("window.handoffFrame()")
				if err != nil {
					return err
				}
				data, _ := strings.CutPrefix(url, "data:image/png;base64,")
				frame, err = base64.StdEncoding.DecodeString(data)
				if err != nil {
					return err
				}
				cursor, err = c.eval("document.getElementById('screen').style.cursor")
				return err
			}
			time.Sleep(300 * time.Millisecond)
		}
		state, _ := c.eval("document.getElementById('state').textContent")
		return fmt.Errorf("no video in the page within %v (page says %q)", within, state)
	})
	if err != nil {
		t.Fatal(err)
	}
	return frame, cursor
}
