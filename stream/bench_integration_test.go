//go:build integration

package stream

import (
	"context"
	"fmt"
	"image"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/stream/vpx"
)

// painter draws on a display, the "glass" on the app side: solid
// rectangles, or a textured picture scrolling over the whole screen.
type painter struct {
	conn    *xgb.Conn
	win     xproto.Window
	gc      xproto.Gcontext
	texture xproto.Pixmap // patternWidth wider than the screen, once made
}

func newPainter(tb testing.TB, d display) *painter {
	nc, err := net.Dial("unix", d.socket)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := xgb.NewConnNet(nc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(conn.Close)
	root := xproto.Setup(conn).DefaultScreen(conn).Root
	gc, _ := xproto.NewGcontextId(conn)
	xproto.CreateGC(conn, gc, xproto.Drawable(root), 0, nil)
	return &painter{conn: conn, win: root, gc: gc}
}

// fill paints a rectangle and waits until the X server has done it.
func (p *painter) fill(r image.Rectangle, rgb uint32) {
	xproto.ChangeGC(p.conn, p.gc, xproto.GcForeground, []uint32{rgb})
	xproto.PolyFillRectangle(p.conn, xproto.Drawable(p.win), p.gc, []xproto.Rectangle{{X: int16(r.Min.X), Y: int16(r.Min.Y), Width: uint16(r.Dx()), Height: uint16(r.Dy())}})
	xproto.GetInputFocus(p.conn).Reply() // a round trip: the drawing is done
}

// patternWidth is how far the texture scrolls before it repeats.
const patternWidth = 256

// makeTexture puts a screen-sized texture, patternWidth wider, on the X
// server (in strips: a request is at most 256 KB), the same pattern as
// BenchmarkEncodeVsFFmpeg's frames.
func (p *painter) makeTexture(tb testing.TB, w, h int) {
	depth := xproto.Setup(p.conn).DefaultScreen(p.conn).RootDepth
	pm, err := xproto.NewPixmapId(p.conn)
	if err != nil {
		tb.Fatal(err)
	}
	tw := w + patternWidth
	if err := xproto.CreatePixmapChecked(p.conn, depth, pm, xproto.Drawable(p.win), uint16(tw), uint16(h)).Check(); err != nil {
		tb.Fatal(err)
	}
	const rows = 16
	strip := make([]byte, tw*rows*4)
	for y0 := 0; y0 < h; y0 += rows {
		n := min(rows, h-y0)
		for y := 0; y < n; y++ {
			for x := 0; x < tw; x++ {
				o := (y*tw + x) * 4
				strip[o], strip[o+1], strip[o+2] = byte(x), byte(y0+y), byte(x^(y0+y))
			}
		}
		if err := xproto.PutImageChecked(p.conn, xproto.ImageFormatZPixmap, xproto.Drawable(pm), p.gc,
			uint16(tw), uint16(n), 0, int16(y0), 0, depth, strip[:tw*n*4]).Check(); err != nil {
			tb.Fatal(err)
		}
	}
	p.texture = pm
}

// scroll shows the texture moved by offset pixels and waits until the X
// server has drawn it: every pixel of the screen changes.
func (p *painter) scroll(r image.Rectangle, offset int) {
	xproto.CopyArea(p.conn, xproto.Drawable(p.texture), xproto.Drawable(p.win), p.gc,
		int16(offset%patternWidth), 0, int16(r.Min.X), int16(r.Min.Y), uint16(r.Dx()), uint16(r.Dy()))
	xproto.GetInputFocus(p.conn).Reply()
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkGlassToGlass measures how long a change on the app's display takes
// to show in a viewer's decoded frame, over WebRTC on loopback and between
// two namespace workstations (the app on one, the viewer on the other),
// beside the 60 Hz frame interval.
func BenchmarkGlassToGlass(b *testing.B) {
	for _, link := range []string{"loopback", "netns"} {
		for _, size := range []string{"1280x720x24", "1920x1080x24"} {
			b.Run(link+"/"+size[:len(size)-3], func(b *testing.B) { glassToGlass(b, link, size) })
		}
	}
}

func glassToGlass(b *testing.B, link, size string) {
	d := startDisplay(b, size)
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	b.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	if link == "netns" {
		n := testnet.New(b, "a", "b")
		host.udpMux = udpMuxIn(b, n.Host("b"))
		v.udpMux = udpMuxIn(b, n.Host("a"))
	}
	probe := image.Pt(40, 40)
	seen := make(chan uint32, 16)
	v.OnFrame(func(img *image.RGBA) {
		o := img.PixOffset(probe.X, probe.Y)
		seen <- uint32(img.Pix[o])<<16 | uint32(img.Pix[o+1])<<8 | uint32(img.Pix[o+2])
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()
	select {
	case <-seen:
	case <-time.After(20 * time.Second):
		b.Fatal("no first frame")
	}
	p := newPainter(b, d)
	colors := []uint32{0xff0000, 0x00ff00}
	var lat []time.Duration
	b.ResetTimer()
	// 40 changes per iteration: percentiles need samples even at -benchtime 1x.
	for i := 0; i < b.N*40; i++ {
		want := colors[i%2]
		start := time.Now()
		p.fill(image.Rect(0, 0, 200, 200), want)
		for got := uint32(0); ; {
			select {
			case got = <-seen:
			case <-time.After(5 * time.Second):
				b.Fatalf("change %d never arrived", i)
			}
			if close3(got, want) {
				break
			}
		}
		lat = append(lat, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	frame := time.Second / 60
	p50, p95 := percentile(lat, .5), percentile(lat, .95)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(p95)/float64(frame), "p95/frame-interval")
}

func close3(a, b uint32) bool {
	for s := 0; s < 24; s += 8 {
		d := int(a>>s&0xff) - int(b>>s&0xff)
		if d < -40 || d > 40 {
			return false
		}
	}
	return true
}

// BenchmarkEncodeVsFFmpeg encodes the same full-motion 1080p frames with our
// binding and with `ffmpeg -c:v libvpx -deadline realtime` in the same run,
// with the same speed (cpu-used) and threads, and reports frames per second
// and the speed ratio (ours/ffmpeg).
func BenchmarkEncodeVsFFmpeg(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Fatal("ffmpeg is missing: make deps installs it")
	}
	const w, h, n = 1920, 1080, 120
	raw := filepath.Join(b.TempDir(), "frames.bgra")
	f, err := os.Create(raw)
	if err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, n)
	for i := range frames {
		fr := make([]byte, w*h*4)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := (y*w + x) * 4
				// A pattern that moves every frame over the whole screen.
				fr[o], fr[o+1], fr[o+2] = byte(x+i*7), byte(y+i*3), byte((x^y)+i)
			}
		}
		frames[i] = fr
		f.Write(fr)
	}
	f.Close()
	for i := 0; i < b.N; i++ {
		enc, err := vpx.NewEncoder(vpx.EncoderConfig{Width: w, Height: h, BitrateKbps: 8000})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for j, fr := range frames {
			if _, _, err := enc.Encode(fr, w*4, time.Duration(j)*16*time.Millisecond, 16*time.Millisecond, j == 0); err != nil {
				b.Fatal(err)
			}
		}
		ours := time.Since(start)
		enc.Close()
		cpu, threads := fmt.Sprint(enc.Config().Speed), fmt.Sprint(enc.Config().Threads)
		start = time.Now()
		out, err := exec.Command("ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "bgr0", "-s", fmt.Sprintf("%dx%d", w, h),
			"-r", "60", "-i", raw, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", cpu, "-b:v", "8M",
			"-threads", threads, "-f", "null", "-").CombinedOutput()
		if err != nil {
			b.Fatalf("ffmpeg: %v %s", err, out)
		}
		theirs := time.Since(start)
		b.ReportMetric(float64(n)/ours.Seconds(), "fps")
		b.ReportMetric(float64(n)/theirs.Seconds(), "ffmpeg-fps")
		b.ReportMetric(theirs.Seconds()/ours.Seconds(), "speed-vs-ffmpeg")
	}
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStreamCPU measures the CPU the host and a viewer (both in this
// process) use at 1080p: on a still screen, and while the whole screen
// changes at 60 Hz, two ways: flipping between two colours ("motion", the
// least work for the encoder) and a texture scrolling 7 pixels a frame
// ("scroll"); also the frames per second the host sent and the viewer
// decoded under that motion.
func BenchmarkStreamCPU(b *testing.B) {
	d := startDisplay(b, "1920x1080x24")
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	b.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	frames := make(chan struct{}, 1024)
	v.OnFrame(func(*image.RGBA) {
		select {
		case frames <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()
	select {
	case <-frames:
	case <-time.After(20 * time.Second):
		b.Fatal("no first frame")
	}
	screen := image.Rect(0, 0, 1920, 1080)
	p := newPainter(b, d)
	p.makeTexture(b, screen.Dx(), screen.Dy())
	const span = 3 * time.Second
	// under draws frame j at 60 Hz for span and reports the CPU used and
	// the frames sent and shown per second.
	under := func(name string, draw func(j int)) {
		time.Sleep(500 * time.Millisecond) // the last refining frames
		for len(frames) > 0 {
			<-frames
		}
		c0, t0 := cpuTime(), time.Now()
		sent := host.Frames.Load()
		tick := time.NewTicker(time.Second / 60)
		for j := 0; time.Since(t0) < span; j++ {
			<-tick.C
			draw(j)
		}
		tick.Stop()
		elapsed := time.Since(t0)
		b.ReportMetric(float64(cpuTime()-c0)/float64(elapsed)*100, name+"-cpu-%")
		b.ReportMetric(float64(len(frames))/elapsed.Seconds(), name+"-fps")
		b.ReportMetric(float64(host.Frames.Load()-sent)/elapsed.Seconds(), name+"-sent-fps")
	}
	for i := 0; i < b.N; i++ {
		time.Sleep(500 * time.Millisecond)
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(span)
		b.ReportMetric(float64(cpuTime()-c0)/float64(time.Since(t0))*100, "idle-cpu-%")
		colors := []uint32{0x204080, 0x806020}
		under("motion", func(j int) { p.fill(screen, colors[j%2]) })
		under("scroll", func(j int) { p.scroll(screen, 7*j) })
	}
}
