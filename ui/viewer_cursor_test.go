package ui

import (
	"image"
	"image/color"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
)

// squares is a w×h cursor image whose pixel x,y has red x and green y.
func squares(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x), G: uint8(y), A: 0xff})
		}
	}
	return img
}

func TestViewerWindowCursor(t *testing.T) {
	tr, m, _ := newTestTray(t, false)
	m.Reset(testSnapshot())
	tr.showViewer("notes")
	v := tr.viewers["notes"]
	d := &fakeDisplay{}
	v.attach(d)

	if got := v.screen.Cursor(); got != desktop.DefaultCursor {
		t.Fatalf("cursor before the app's is known = %v, want the default", got)
	}

	// The picture at its own size: the app's cursor as it is.
	v.screen.showFrame(image.NewRGBA(image.Rect(0, 0, 400, 200)))
	v.screen.Resize(fyne.NewSize(400, 200))
	d.cursor(squares(16, 16), 3, 4)
	img, x, y := v.screen.Cursor().Image()
	if img == nil || img.Bounds().Size() != image.Pt(16, 16) || x != 3 || y != 4 {
		t.Fatalf("cursor %v hot %d,%d; want 16x16 hot 3,4", img, x, y)
	}
	if a, b := v.screen.Cursor(), v.screen.Cursor(); a != b {
		t.Error("Cursor makes a new cursor on every call: Fyne would re-create it on every mouse move")
	}

	// The picture shrunk to half: so is the pointer.
	v.screen.Resize(fyne.NewSize(200, 100))
	img, x, y = v.screen.Cursor().Image()
	if img == nil || img.Bounds().Size() != image.Pt(8, 8) || x != 1 || y != 2 {
		t.Errorf("at half size: cursor %v hot %d,%d; want 8x8 hot 1,2", img.Bounds(), x, y)
	}

	// The app changes it.
	v.screen.Resize(fyne.NewSize(400, 200))
	d.cursor(squares(9, 16), 4, 8)
	if img, x, y := v.screen.Cursor().Image(); img.Bounds().Size() != image.Pt(9, 16) || x != 4 || y != 8 {
		t.Errorf("after a change: cursor %v hot %d,%d; want 9x16 hot 4,8", img.Bounds(), x, y)
	}

	// After the window let go of the display, its cursors are ignored.
	v.disconnect()
	d.cursor(squares(32, 32), 0, 0)
	if img, _, _ := v.screen.Cursor().Image(); img.Bounds().Size() != image.Pt(9, 16) {
		t.Errorf("cursor %v from a closed display was taken", img.Bounds())
	}
}

func TestScaleCursor(t *testing.T) {
	src := &remoteCursor{img: squares(16, 8), hotX: 15, hotY: 2}
	tests := []struct {
		k          float32
		w, h       int
		hotX, hotY int
	}{
		{1, 16, 8, 15, 2},
		{2, 32, 16, 30, 4},
		{0.5, 8, 4, 7, 1},
		{0.01, 1, 1, 0, 0},
		{100, maxCursorSide, maxCursorSide / 2, 240, 32},
	}
	for _, tt := range tests {
		c := scaleCursor(src, tt.k)
		img, x, y := c.Image()
		if img.Bounds().Size() != image.Pt(tt.w, tt.h) || x != tt.hotX || y != tt.hotY {
			t.Errorf("k %v: %v hot %d,%d; want %dx%d hot %d,%d", tt.k, img.Bounds().Size(), x, y, tt.w, tt.h, tt.hotX, tt.hotY)
			continue
		}
		// The bottom-right pixel comes from the source's.
		r, g, _, _ := img.At(tt.w-1, tt.h-1).RGBA()
		if tt.k >= 1 && (r>>8 != 15 || g>>8 != 7) {
			t.Errorf("k %v: bottom-right pixel from %d,%d, want 15,7", tt.k, r>>8, g>>8)
		}
	}
}
