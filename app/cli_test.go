package app

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
)

func TestCLIUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, 2, "usage: handoff"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run"}, 2, "no command given"},
		{[]string{"run", "--size", "huge", "--", "xterm"}, 2, "bad --size"},
		{[]string{"run", "--memory", "lots", "--", "xterm"}, 2, "bad size"},
		{[]string{"suspend"}, 2, "want 1 argument"},
		{[]string{"screenshot", "a"}, 2, "want 2 argument"},
		{[]string{"daemon", "--log-level", "loud"}, 2, "bad --log-level"},
		{[]string{"--socket", "/nonexistent/h.sock", "ls"}, 1, "cannot reach the Handoff daemon"},
		{[]string{"version"}, 0, ""},
		{[]string{"help"}, 0, ""},
		{[]string{"tray"}, 1, "no tray"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := mainWith(tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("stderr %q does not mention %q", errOut.String(), tt.wantErr)
			}
		})
	}
}

// TestHelp: `handoff help` lists every command, the tray too, on stdout.
func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := mainWith([]string{"help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errOut.String())
	}
	for _, want := range []string{"usage: handoff", "\n  tray [--devices]", "\n  daemon ", "\n  send NAME PEER", "\n  help "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"512M": 512 << 20, "2G": 2 << 30, "64k": 64 << 10, "1000": 1000} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"G", "-1G", "x"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

func TestAppTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	writeAppTable(&b, []engine.Info{
		{Name: "notes", State: engine.StateRunning, PID: 42, MemoryBytes: 30 << 20, Started: now.Add(-90 * time.Second), Command: []string{"xterm"}},
		{Name: "clock", State: engine.StateSuspended, ImageBytes: 17 << 20, Command: []string{"xclock", "-update", "1"}, Error: "x"},
	}, now)
	got := b.String()
	for _, want := range []string{"notes  running", "42", "30M", "1m30s", "clock  suspended (!)", "17M on disk", "xclock -update 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestWAVRoundTrip(t *testing.T) {
	pcm := []int16{0, 1, -1, 32767, -32768, 1234}
	var b bytes.Buffer
	if err := writeWAV(&b, pcm); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 44+len(pcm)*2 {
		t.Fatalf("WAV of %d samples is %d bytes, want %d", len(pcm), b.Len(), 44+len(pcm)*2)
	}
	got, err := readWAV(&b)
	if err != nil || !slices.Equal(got, pcm) {
		t.Fatalf("read back %v (%v), want %v", got, err, pcm)
	}
}
