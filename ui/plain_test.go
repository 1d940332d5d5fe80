package ui

import (
	"image"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/stream"
)

func TestTargetAt(t *testing.T) {
	targets := []dropTarget{
		{Key: "b", Name: "ws-b", Box: box{10, 10, 100, 100}, Online: true, Trusted: true},
		{Key: "c", Name: "ws-c", Box: box{120, 10, 100, 100}, Online: true},
		{Key: "d", Name: "ws-d", Box: box{230, 10, 100, 100}, Trusted: true},
	}
	tests := []struct {
		x, y    float32
		want    string // "" for none
		accepts bool
		why     string
	}{
		{50, 50, "b", true, ""},
		{10, 10, "b", true, ""},  // the top-left corner is inside
		{110, 50, "", false, ""}, // the right edge is outside, between icons
		{119.9, 50, "", false, ""},
		{120, 109, "c", false, "ws-c is not paired with this device: pair with it first"},
		{300, 60, "d", false, "ws-d is offline"},
		{50, 200, "", false, ""},
		{-5, -5, "", false, ""},
	}
	for _, tc := range tests {
		got, ok := targetAt(targets, tc.x, tc.y)
		if (tc.want != "") != ok || got.Key != tc.want {
			t.Errorf("(%v,%v): target %q %v, want %q", tc.x, tc.y, got.Key, ok, tc.want)
			continue
		}
		if !ok {
			continue
		}
		yes, why := got.accepts()
		if yes != tc.accepts || why != tc.why {
			t.Errorf("(%v,%v): accepts %v %q, want %v %q", tc.x, tc.y, yes, why, tc.accepts, tc.why)
		}
	}
	// Overlapping boxes: the one drawn last wins.
	over := []dropTarget{{Key: "under", Box: box{0, 0, 50, 50}}, {Key: "over", Box: box{25, 25, 50, 50}}}
	if got, _ := targetAt(over, 30, 30); got.Key != "over" {
		t.Errorf("overlap: %q, want the top one", got.Key)
	}
}

func TestParseDesktopEntry(t *testing.T) {
	tests := []struct {
		name, file string
		want       *installedApp
	}{
		{"plain", "[Desktop Entry]\nType=Application\nName=XTerm\nExec=xterm\n", &installedApp{Name: "XTerm", Exec: []string{"xterm"}}},
		{"field codes stripped", "[Desktop Entry]\nName=Editor\nExec=gedit %U --new-window %f\n",
			&installedApp{Name: "Editor", Exec: []string{"gedit", "--new-window"}}},
		{"percent sign and quotes", "[Desktop Entry]\nName=Calc\nExec=\"/opt/my calc/calc\" --scale=100%% %i %c\n",
			&installedApp{Name: "Calc", Exec: []string{"/opt/my calc/calc", "--scale=100%"}}},
		{"code inside an argument", "[Desktop Entry]\nName=X\nExec=run --file=%f\n", &installedApp{Name: "X", Exec: []string{"run", "--file="}}},
		{"NoDisplay skipped", "[Desktop Entry]\nName=Helper\nExec=helper\nNoDisplay=true\n", nil},
		{"Hidden skipped", "[Desktop Entry]\nName=Gone\nExec=gone\nHidden=true\n", nil},
		{"terminal app skipped", "[Desktop Entry]\nName=Top\nExec=htop\nTerminal=true\n", nil},
		{"link skipped", "[Desktop Entry]\nType=Link\nName=Site\nURL=https://example.com\n", nil},
		{"no Exec", "[Desktop Entry]\nName=Nothing\n", nil},
		{"localized names and actions ignored",
			"# comment\n[Desktop Entry]\nName=Files\nName[de]=Dateien\nExec=nautilus --new-window %U\n\n[Desktop Action new]\nName=New\nExec=nautilus --other\n",
			&installedApp{Name: "Files", Exec: []string{"nautilus", "--new-window"}}},
	}
	for _, tc := range tests {
		got, ok := parseDesktopEntry(strings.NewReader(tc.file))
		if tc.want == nil {
			if ok {
				t.Errorf("%s: got %+v, want it skipped", tc.name, got)
			}
			continue
		}
		if !ok || got.Name != tc.want.Name || !reflect.DeepEqual(got.Exec, tc.want.Exec) {
			t.Errorf("%s: got %+v %v, want %+v", tc.name, got, ok, *tc.want)
		}
	}
}

func TestInstalledApps(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	write := func(dir, name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "xterm.desktop", "[Desktop Entry]\nName=XTerm\nExec=xterm\n")
	write(a, "hidden.desktop", "[Desktop Entry]\nName=Hidden\nExec=h\nNoDisplay=true\n")
	write(b, "xterm.desktop", "[Desktop Entry]\nName=Other XTerm\nExec=other\n")
	write(b, "clock.desktop", "[Desktop Entry]\nName=analog clock\nExec=xclock -analog\n")
	write(b, "notes.txt", "not an entry")
	got := installedApps([]string{a, b})
	var names []string
	for _, x := range got {
		names = append(names, x.Name)
	}
	if want := []string{"analog clock", "XTerm"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("apps %v, want %v", names, want)
	}
	if f := filterApps(got, "CLOCK ana"); len(f) != 1 || f[0].Name != "analog clock" {
		t.Errorf("filter: %v", f)
	}
	if f := filterApps(got, "xterm"); len(f) != 1 {
		t.Errorf("filter by command: %v", f)
	}
	if f := filterApps(got, ""); len(f) != 2 {
		t.Errorf("empty filter: %v", f)
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"xterm", []string{"xterm"}},
		{"  xterm   -fa  Monospace ", []string{"xterm", "-fa", "Monospace"}},
		{`xterm -title "my notes" -e 'echo $HOME'`, []string{"xterm", "-title", "my notes", "-e", "echo $HOME"}},
		{`a\ b "c\"d" ''`, []string{"a b", `c"d`, ""}},
		{"", nil},
	}
	for _, tc := range tests {
		if got := splitCommand(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommand(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.want != nil {
			if back := splitCommand(quoteCommand(tc.want)); !reflect.DeepEqual(back, tc.want) {
				t.Errorf("quoteCommand(%q) does not round-trip: %q", tc.want, back)
			}
		}
	}
}

func TestAppNames(t *testing.T) {
	s := State{Apps: []AppItem{{Name: "xterm"}, {Name: "xterm-2"}}}
	tests := []struct {
		name string
		cmd  []string
		want string
	}{
		{"XTerm", []string{"/usr/bin/xterm", "-fa", "Mono"}, "xterm-3"},
		{"Analog Clock", nil, "analog-clock"},
		{"", []string{"/opt/Über App/run.sh"}, "run.sh"},
		{"!!!", nil, "app"},
	}
	for _, tc := range tests {
		if got := uniqueName(appNameFor(tc.name, tc.cmd), s); got != tc.want {
			t.Errorf("name for %q %q = %q, want %q", tc.name, tc.cmd, got, tc.want)
		}
	}
}

func TestParseHotkey(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		keysym  uint32
		wantErr bool
	}{
		{"Ctrl+Alt+H", "Ctrl+Alt+H", 'h', false},
		{"ctrl+alt+h", "Ctrl+Alt+H", 'h', false},
		{" Super + F12 ", "Super+F12", 0xffc9, false},
		{"Control+Shift+Space", "Ctrl+Shift+Space", 0x20, false},
		{"Alt+1", "Alt+1", '1', false},
		{"H", "", 0, true},            // no modifier: would steal a letter from every app
		{"Shift+H", "", 0, true},      // Shift alone is typing
		{"Ctrl+Alt", "", 0, true},     // no key
		{"Ctrl+Hyper+H", "", 0, true}, // unknown modifier
		{"Ctrl+Nope", "", 0, true},
	}
	for _, tc := range tests {
		h, err := parseHotkey(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseHotkey(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (h.String() != tc.want || h.Keysym != tc.keysym) {
			t.Errorf("parseHotkey(%q) = %s %#x, want %s %#x", tc.in, h, h.Keysym, tc.want, tc.keysym)
		}
	}
	h, _ := parseHotkey(DefaultHotkey)
	if !h.matches(fyne.KeyH, fyne.KeyModifierControl|fyne.KeyModifierAlt) ||
		h.matches(fyne.KeyH, fyne.KeyModifierControl) || h.matches(fyne.KeyJ, fyne.KeyModifierControl|fyne.KeyModifierAlt) {
		t.Error("matches is wrong")
	}
}

func TestDecideHotkey(t *testing.T) {
	base := func() State {
		m := NewModel()
		m.Reset(testSnapshot()) // notes running, clock suspended, eyes on ws-b; ws-b online+trusted
		return m.State()
	}
	wsb, wsd := testID(2).String(), testID(4).String()
	busy := base()
	busy.Handoffs["notes"] = Handoff{App: "notes", Phase: "pre-copy"}
	two := base()
	two.Apps = append(two.Apps, AppItem{Name: "zz", State: "running"})
	tests := []struct {
		name          string
		s             State
		focused, last string
		want          hotkeyAction
	}{
		{"focused app to last peer", base(), "notes", wsb, hotkeyAction{hotkeySend, "notes", wsb}},
		{"last peer by name", base(), "notes", "WS-B", hotkeyAction{hotkeySend, "notes", wsb}},
		{"no last peer: chooser", base(), "notes", "", hotkeyAction{hotkeyChoose, "notes", ""}},
		{"last peer offline: chooser", base(), "notes", wsd, hotkeyAction{hotkeyChoose, "notes", ""}},
		{"last peer unknown: chooser", base(), "notes", "gone", hotkeyAction{hotkeyChoose, "notes", ""}},
		{"nothing focused, one movable app", base(), "", wsb, hotkeyAction{hotkeySend, "notes", wsb}},
		{"nothing focused, two movable apps", two, "", wsb, hotkeyAction{hotkeyChoose, "", ""}},
		{"remote app comes back", base(), "eyes", wsb, hotkeyAction{hotkeyBringBack, "eyes", ""}},
		{"suspended app: chooser", base(), "clock", wsb, hotkeyAction{hotkeyChoose, "clock", ""}},
		{"moving app: chooser", busy, "notes", wsb, hotkeyAction{hotkeyChoose, "notes", ""}},
		{"focused app gone", base(), "calc", wsb, hotkeyAction{hotkeyChoose, "", ""}},
	}
	for _, tc := range tests {
		if got := decideHotkey(tc.s, tc.focused, tc.last); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestKeyboard(t *testing.T) {
	type step struct {
		op   string // down, up, typed, rune
		key  fyne.KeyName
		r    rune
		want []stream.Input
	}
	down := func(sym uint32) stream.Input { return stream.Input{Kind: stream.InputKey, Keysym: sym, Down: true} }
	up := func(sym uint32) stream.Input { return stream.Input{Kind: stream.InputKey, Keysym: sym} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"a character goes by its rune", []step{
			{op: "down", key: fyne.KeyA}, {op: "rune", r: 'a', want: []stream.Input{down('a'), up('a')}},
			{op: "typed", key: fyne.KeyA}, {op: "up", key: fyne.KeyA},
		}},
		{"shifted character: Shift held, the rune's keysym", []step{
			{op: "down", key: desktop.KeyShiftLeft, want: []stream.Input{down(0xffe1)}},
			{op: "down", key: fyne.Key1}, {op: "rune", r: '!', want: []stream.Input{down('!'), up('!')}},
			{op: "up", key: fyne.Key1}, {op: "up", key: desktop.KeyShiftLeft, want: []stream.Input{up(0xffe1)}},
		}},
		{"non-Latin-1 rune", []step{{op: "rune", r: 'ж', want: []stream.Input{down(0x1000436), up(0x1000436)}}}},
		{"Latin-1 rune", []step{{op: "rune", r: 'é', want: []stream.Input{down(0xe9), up(0xe9)}}}},
		{"special keys by X name", []step{
			{op: "down", key: fyne.KeyReturn, want: []stream.Input{down(0xff0d)}},
			{op: "typed", key: fyne.KeyReturn},
			{op: "up", key: fyne.KeyReturn, want: []stream.Input{up(0xff0d)}},
			{op: "down", key: fyne.KeyF5, want: []stream.Input{down(0xffc2)}},
			{op: "down", key: fyne.KeyLeft, want: []stream.Input{down(0xff51)}},
			{op: "down", key: fyne.KeyEscape, want: []stream.Input{down(0xff1b)}},
			{op: "down", key: fyne.KeyBackspace, want: []stream.Input{down(0xff08)}},
		}},
		{"Ctrl+C: the letter goes as a key, lower case", []step{
			{op: "down", key: desktop.KeyControlLeft, want: []stream.Input{down(0xffe3)}},
			{op: "down", key: fyne.KeyC, want: []stream.Input{down('c')}},
			{op: "up", key: fyne.KeyC, want: []stream.Input{up('c')}},
			{op: "up", key: desktop.KeyControlLeft, want: []stream.Input{up(0xffe3)}},
			{op: "down", key: fyne.KeyC}, // no modifier any more: the rune will come
		}},
		{"Alt+punctuation", []step{
			{op: "down", key: desktop.KeyAltLeft, want: []stream.Input{down(0xffe9)}},
			{op: "down", key: fyne.KeyPeriod, want: []stream.Input{down('.')}},
			{op: "down", key: fyne.KeySpace, want: []stream.Input{down(' ')}},
		}},
		{"key repeat of a special key repeats the press", []step{
			{op: "down", key: fyne.KeyBackspace, want: []stream.Input{down(0xff08)}},
			{op: "typed", key: fyne.KeyBackspace},
			{op: "typed", key: fyne.KeyBackspace, want: []stream.Input{down(0xff08)}},
			{op: "up", key: fyne.KeyBackspace, want: []stream.Input{up(0xff08)}},
			{op: "typed", key: fyne.KeyBackspace},
		}},
		{"a release without a press sends nothing", []step{{op: "up", key: fyne.KeyReturn}}},
		{"one Ctrl released, the other held", []step{
			{op: "down", key: desktop.KeyControlLeft, want: []stream.Input{down(0xffe3)}},
			{op: "down", key: desktop.KeyControlRight, want: []stream.Input{down(0xffe4)}},
			{op: "up", key: desktop.KeyControlLeft, want: []stream.Input{up(0xffe3)}},
			{op: "down", key: fyne.KeyV, want: []stream.Input{down('v')}},
		}},
	}
	for _, tc := range tests {
		k := newKeyboard()
		for i, st := range tc.steps {
			var got []stream.Input
			switch st.op {
			case "down":
				got = k.keyDown(st.key)
			case "up":
				got = k.keyUp(st.key)
			case "typed":
				got = k.typedKey(st.key)
			case "rune":
				got = k.typedRune(st.r)
			}
			if !reflect.DeepEqual(got, st.want) {
				t.Errorf("%s, step %d (%s %s%q): %+v, want %+v", tc.name, i, st.op, st.key, st.r, got, st.want)
			}
			for _, in := range got {
				if err := in.Validate(); err != nil {
					t.Errorf("%s: invalid input %+v: %v", tc.name, in, err)
				}
			}
		}
	}
	k := newKeyboard()
	k.keyDown(desktop.KeyShiftLeft)
	k.keyDown(fyne.KeyDown)
	if got := k.releaseAll(); len(got) != 2 || got[0].Down || got[1].Down || k.mods != 0 {
		t.Errorf("releaseAll: %+v, mods %v", got, k.mods)
	}
}

func TestFrameCoordinates(t *testing.T) {
	frame := image.Pt(1280, 800)
	tests := []struct {
		name   string
		size   fyne.Size
		p      fyne.Position
		x, y   int
		inside bool
	}{
		{"same size, origin", fyne.NewSize(1280, 800), fyne.NewPos(0, 0), 0, 0, true},
		{"same size, middle", fyne.NewSize(1280, 800), fyne.NewPos(640.5, 400.9), 640, 400, true},
		{"same size, last pixel", fyne.NewSize(1280, 800), fyne.NewPos(1279.9, 799.9), 1279, 799, true},
		{"half size", fyne.NewSize(640, 400), fyne.NewPos(320, 200), 640, 400, true},
		{"double size", fyne.NewSize(2560, 1600), fyne.NewPos(2559, 1599), 1279, 799, true},
		// Wider widget: bars left and right (scale 0.5, 80 units each side).
		{"pillarbox, on picture", fyne.NewSize(800, 400), fyne.NewPos(80, 0), 0, 0, true},
		{"pillarbox, left bar", fyne.NewSize(800, 400), fyne.NewPos(10, 100), 0, 200, false},
		{"pillarbox, right bar", fyne.NewSize(800, 400), fyne.NewPos(790, 100), 1279, 200, false},
		// Taller widget: bars above and below.
		{"letterbox, above", fyne.NewSize(640, 600), fyne.NewPos(320, 10), 640, 0, false},
		{"letterbox, on picture", fyne.NewSize(640, 600), fyne.NewPos(320, 300), 640, 400, true},
		{"outside the widget", fyne.NewSize(1280, 800), fyne.NewPos(-20, 900), 0, 799, false},
	}
	for _, tc := range tests {
		x, y, in := fitFrame(tc.size, frame).toFrame(tc.p, frame)
		if x != tc.x || y != tc.y || in != tc.inside {
			t.Errorf("%s: (%d,%d) inside=%v, want (%d,%d) %v", tc.name, x, y, in, tc.x, tc.y, tc.inside)
		}
	}
	// No frame yet: everything maps to 0,0.
	if x, y, _ := fitFrame(fyne.NewSize(100, 100), image.Point{}).toFrame(fyne.NewPos(50, 50), image.Point{}); x != 0 || y != 0 {
		t.Errorf("no frame: (%d,%d)", x, y)
	}
}

func TestMouseMapping(t *testing.T) {
	buttons := map[desktop.MouseButton]int{desktop.MouseButtonPrimary: 1, desktop.MouseButtonTertiary: 2,
		desktop.MouseButtonSecondary: 3, 99: 0}
	for b, want := range buttons {
		if got := mouseButton(b); got != want {
			t.Errorf("button %v: %d, want %d", b, got, want)
		}
	}
	wheel := []struct {
		d    fyne.Delta
		x, y int
	}{
		{fyne.Delta{DY: 10}, 0, -1}, // Fyne: positive is up; X: negative is up (button 4)
		{fyne.Delta{DY: -3}, 0, 1},
		{fyne.Delta{DX: 5}, -1, 0},
		{fyne.Delta{DX: -5, DY: -5}, 1, 1},
		{fyne.Delta{}, 0, 0},
	}
	for _, tc := range wheel {
		if x, y := wheelNotches(tc.d); x != tc.x || y != tc.y {
			t.Errorf("scroll %+v: (%d,%d), want (%d,%d)", tc.d, x, y, tc.x, tc.y)
		}
	}
}

func TestPlainReason(t *testing.T) {
	tests := []struct{ in, peer, want string }{
		{`send "notes" to ws-b: ws-b refused the handoff: the user of ws-b declined`, "ws-b",
			"ws-b refused the handoff: the user of ws-b declined."},
		{`send "notes" to ws-b: Post "https://192.0.2.11:7466/peer/v1/handoff/offer": dial tcp 192.0.2.11:7466: connect: connection refused`,
			"ws-b", "Could not reach ws-b: is its Handoff daemon running?"},
		{"context deadline exceeded", "ws-b", "ws-b did not answer in time."},
		{"write /var/lib/handoff/x: no space left on device", "", "There is not enough disk space."},
		{"cannot reach the Handoff daemon at /run/handoff/handoff.sock (is it running?)", "",
			"The Handoff daemon on this device is not running."},
		{"ws-b is offline.", "", "Ws-b is offline."},
		{"ws-c is offline", "ws-c", "ws-c is offline."},
		{"", "", "No reason was given."},
	}
	for _, tc := range tests {
		if got := plainReason(tc.in, tc.peer); got != tc.want {
			t.Errorf("plainReason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPhaseText(t *testing.T) {
	tests := []struct {
		h    Handoff
		want string
	}{
		{Handoff{Peer: "ws-b", Phase: "request"}, "Asking ws-b…"},
		{Handoff{Peer: "ws-b", Phase: "pre-copy", Bytes: 1 << 20, Total: 16 << 20}, "Copying memory (1.0 MiB of 16.0 MiB)…"},
		{Handoff{Peer: "ws-b", Phase: "pre-copy", Round: 2, Bytes: 1 << 20, Total: 4 << 20}, "Copying what changed meanwhile (1.0 MiB of 4.0 MiB)…"},
		{Handoff{Peer: "ws-b", Phase: "restore"}, "Starting on ws-b…"},
		{Handoff{Phase: "restore"}, "Starting on the other device…"},
	}
	for _, tc := range tests {
		if got := phaseText(tc.h); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestSplitTrayArgs(t *testing.T) {
	tests := []struct {
		args   []string
		isTray bool
	}{
		{[]string{"tray"}, true},
		{[]string{"--socket", "/tmp/h.sock", "tray", "--devices"}, true},
		{[]string{"--socket=/tmp/h.sock", "tray"}, true},
		{[]string{"-socket", "tray", "tray"}, true}, // a socket named "tray"
		{[]string{"--socket", "tray"}, false},
		{[]string{"ls"}, false},
		{[]string{"run", "--", "tray"}, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := IsTray(tc.args); got != tc.isTray {
			t.Errorf("IsTray(%q) = %v, want %v", tc.args, got, tc.isTray)
		}
	}
}

var _ = app.EventApp
