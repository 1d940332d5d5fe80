package stream

import (
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
