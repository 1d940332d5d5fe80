package stream

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/jezek/xgb/xfixes"
)

// testCursor is a w×h image whose pixel x,y has red x and green y, and a
// 1-pixel-wide opaque border.
func testCursor(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			a := uint8(0x80)
			if x == 0 || y == 0 || x == w-1 || y == h-1 {
				a = 0xff
			}
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 7, A: a})
		}
	}
	return img
}

func TestCursorMessage(t *testing.T) {
	tests := []struct {
		name               string
		w, h, hotX, hotY   int
		wantW, wantH       int
		wantHotX, wantHotY int
		wantX0, wantY0     int // the source pixel at the message's 0,0
	}{
		{"arrow", 24, 24, 3, 2, 24, 24, 3, 2, 0, 0},
		{"one pixel", 1, 1, 0, 0, 1, 1, 0, 0, 0, 0},
		{"largest", maxCursor, maxCursor, 127, 127, maxCursor, maxCursor, 127, 127, 0, 0},
		{"wide, hot spot left", 200, 16, 5, 8, maxCursor, 16, 5, 8, 0, 0},
		{"wide, hot spot middle", 200, 16, 100, 8, maxCursor, 16, 64, 8, 36, 0},
		{"tall, hot spot bottom", 10, 250, 4, 249, 10, maxCursor, 4, 127, 0, 122},
	}
	for _, tt := range tests {
		src := testCursor(tt.w, tt.h)
		b, err := cursorMessage(src, tt.hotX, tt.hotY)
		if err != nil {
			t.Fatalf("%s: cursorMessage: %v", tt.name, err)
		}
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil || raw["kind"] != "cursor" {
			t.Fatalf("%s: message %.80s is not a cursor message: %v", tt.name, b, err)
		}
		m, err := parseHostMessage(b)
		if err != nil {
			t.Fatalf("%s: parseHostMessage: %v", tt.name, err)
		}
		if m.Kind != kindCursor || m.HotX != tt.wantHotX || m.HotY != tt.wantHotY {
			t.Errorf("%s: kind %q, hot spot %d,%d; want cursor, %d,%d", tt.name, m.Kind, m.HotX, m.HotY, tt.wantHotX, tt.wantHotY)
		}
		if got := m.cursor.Bounds(); got != image.Rect(0, 0, tt.wantW, tt.wantH) {
			t.Fatalf("%s: image %v, want %dx%d", tt.name, got, tt.wantW, tt.wantH)
		}
		for _, p := range []image.Point{{0, 0}, {tt.wantW - 1, tt.wantH - 1}, {tt.wantW / 2, tt.wantH / 3}} {
			got := color.NRGBAModel.Convert(m.cursor.At(p.X, p.Y)).(color.NRGBA)
			want := src.NRGBAAt(tt.wantX0+p.X, tt.wantY0+p.Y)
			if got != want {
				t.Errorf("%s: pixel %v = %v, want %v", tt.name, p, got, want)
			}
		}
	}
	for _, bad := range []struct {
		img        image.Image
		hotX, hotY int
	}{
		{image.NewNRGBA(image.Rect(0, 0, 0, 0)), 0, 0},
		{testCursor(8, 8), 8, 0},
		{testCursor(8, 8), 0, -1},
	} {
		if _, err := cursorMessage(bad.img, bad.hotX, bad.hotY); err == nil {
			t.Errorf("cursorMessage(%v, %d, %d) took it", bad.img.Bounds(), bad.hotX, bad.hotY)
		}
	}
}

func TestParseCursorMessage(t *testing.T) {
	pngOf := func(w, h int) []byte {
		var buf bytes.Buffer
		if err := png.Encode(&buf, testCursor(w, h)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	msg := func(p []byte, hotX, hotY int) string {
		b, err := json.Marshal(hostMessage{Kind: kindCursor, PNG: p, HotX: hotX, HotY: hotY})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		in      string
		wantErr string
	}{
		{msg(pngOf(16, 16), 15, 0), ""},
		{msg(pngOf(maxCursor, 1), 0, 0), ""},
		{msg(pngOf(maxCursor+1, 8), 0, 0), "not within"},
		{msg(pngOf(8, maxCursor+1), 0, 0), "not within"},
		{msg(pngOf(16, 16), 16, 0), "outside"},
		{msg(pngOf(16, 16), 0, -1), "outside"},
		{msg([]byte("not a png"), 0, 0), "cursor image"},
		{`{"kind":"cursor"}`, "cursor image"},
		{`{"kind":"cursor","png":"%%%"}`, "message from the app's machine"},
	}
	for _, tt := range tests {
		m, err := parseHostMessage([]byte(tt.in))
		if tt.wantErr == "" {
			if err != nil || m.cursor == nil {
				t.Errorf("parseHostMessage(%.60s) = %v, %v", tt.in, m.cursor, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseHostMessage(%.60s) error = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

// A cursor cannot come from a viewer: the host takes only input.
func TestParseInputRefusesCursor(t *testing.T) {
	if _, err := ParseInput([]byte(`{"kind":"cursor","hotX":1}`)); err == nil {
		t.Error("ParseInput took a cursor message")
	}
}

func TestCursorImage(t *testing.T) {
	// Opaque red, half-transparent premultiplied green, and a broken pixel
	// whose colour is above its alpha.
	r := &xfixes.GetCursorImageReply{Width: 3, Height: 1, CursorImage: []uint32{0xffff0000, 0x80008000, 0x10ff0000}}
	img, err := cursorImage(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []color.RGBA{{0xff, 0, 0, 0xff}, {0, 0x80, 0, 0x80}, {0x10, 0, 0, 0x10}}
	for x, w := range want {
		if got := img.RGBAAt(x, 0); got != w {
			t.Errorf("pixel %d = %v, want %v", x, got, w)
		}
	}
	if _, err := cursorImage(&xfixes.GetCursorImageReply{Width: 2, Height: 2, CursorImage: []uint32{1, 2, 3}}); err == nil {
		t.Error("cursorImage took too few pixels")
	}
}
