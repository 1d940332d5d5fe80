package stream

import (
	"strings"
	"testing"
)

func TestClipboardMessage(t *testing.T) {
	for _, text := range []string{"héllo", "", "line 1\nline 2\ttab\x00nul \"quoted\" <b>&", "日本語 🙂", strings.Repeat("é", maxClipboard/2)} {
		b, err := clipboardMessage(text)
		if err != nil {
			t.Fatalf("clipboardMessage(%.20q): %v", text, err)
		}
		got, err := parseHostMessage(b)
		if err != nil || got.Kind != InputClipboard || got.Text != text {
			t.Errorf("parseHostMessage(clipboardMessage(%.20q)) = %q %.20q, %v", text, got.Kind, got.Text, err)
		}
	}
	if _, err := clipboardMessage(strings.Repeat("a", maxClipboard+1)); err == nil {
		t.Error("clipboardMessage took more than the limit")
	}
}

func TestParseHostMessage(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{`{"kind":"clipboard","text":"héllo"}`, "héllo", ""},
		{`{"kind":"clipboard","text":"a\u00e9\n"}`, "aé\n", ""},
		{`{"kind":"clipboard"}`, "", ""},
		{`{"kind":"key","keysym":65}`, "", "unexpected kind"},
		{`{"kind":"teleport"}`, "", "unexpected kind"},
		{`{"kind":"clipboard","text":"` + strings.Repeat("a", maxClipboard+1) + `"}`, "", "more than"},
		{`{"kind":`, "", "message from the app's machine"},
	}
	for _, tt := range tests {
		got, err := parseHostMessage([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseHostMessage(%.40s) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Text != tt.want {
			t.Errorf("parseHostMessage(%.40s) = %q, %v; want %q", tt.in, got.Text, err, tt.want)
		}
	}
}

func TestLatin1(t *testing.T) {
	if got := string(latin1("héllo €")); got != "h\xe9llo ?" {
		t.Errorf("latin1 = %q", got)
	}
	if got := fromLatin1([]byte("h\xe9llo")); got != "héllo" {
		t.Errorf("fromLatin1 = %q", got)
	}
}
