package stream

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseInput(t *testing.T) {
	tests := []struct {
		in      string
		want    Input
		wantErr string
	}{
		{`{"kind":"pointer","x":10,"y":20}`, Input{Kind: InputPointer, X: 10, Y: 20}, ""},
		{`{"kind":"button","button":1,"down":true,"x":3,"y":4}`, Input{Kind: InputButton, Button: 1, Down: true, X: 3, Y: 4}, ""},
		{`{"kind":"key","keysym":65,"down":true}`, Input{Kind: InputKey, Keysym: 65, Down: true}, ""},
		{`{"kind":"wheel","wheelY":-2}`, Input{Kind: InputWheel, WheelY: -2}, ""},
		{`{"kind":"clipboard","text":"héllo"}`, Input{Kind: InputClipboard, Text: "héllo"}, ""},
		{`{"kind":"button","button":0}`, Input{}, "out of range"},
		{`{"kind":"key"}`, Input{}, "without keysym"},
		{`{"kind":"teleport"}`, Input{}, "unknown kind"},
		{`{"kind":"pointer","x":-1}`, Input{}, "off any screen"},
		{`{"kind":"pointer","x":32767,"y":32767}`, Input{Kind: InputPointer, X: 32767, Y: 32767}, ""},
		{`{"kind":"pointer","x":32768}`, Input{}, "off any screen"}, // int16(32768) is -32768
		{`{"kind":"button","button":1,"y":32768}`, Input{}, "off any screen"},
		{`{"kind":"text","text":"` + strings.Repeat("a", maxInputText+1) + `"}`, Input{}, "more than"},
		{`not json`, Input{}, "input event"},
	}
	for _, tt := range tests {
		got, err := ParseInput([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseInput(%.40s) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseInput(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseInput(f *testing.F) {
	// What viewers send: events as the viewer window and the browser
	// viewer encode them.
	for _, ev := range []Input{
		{Kind: InputPointer, X: 640, Y: 400},
		{Kind: InputButton, Button: 1, Down: true, X: 3, Y: 4},
		{Kind: InputButton, Button: 3, X: 1279, Y: 799},
		{Kind: InputWheel, WheelY: -3, X: 10, Y: 10},
		{Kind: InputKey, Keysym: 0xff0d, Down: true},
		{Kind: InputText, Text: "héllo wörld"},
		{Kind: InputClipboard, Text: "copied\nlines"},
	} {
		b, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"pointer","x":32768,"y":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseInput(data)
		if err != nil {
			return
		}
		// What Apply hands to X must fit its fields.
		if int(int16(ev.X)) != ev.X || int(int16(ev.Y)) != ev.Y || ev.X < 0 || ev.Y < 0 {
			t.Fatalf("position %d,%d does not fit X's 16 bits", ev.X, ev.Y)
		}
		if ev.Kind == InputButton && (ev.Button < 1 || ev.Button > 9) {
			t.Fatalf("button %d accepted", ev.Button)
		}
		if len(ev.Text) > maxInputText {
			t.Fatalf("%d bytes of text accepted", len(ev.Text))
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseInput(b)
		if err != nil || back != ev {
			t.Fatalf("event changed going round: %+v, %v", back, err)
		}
	})
}
