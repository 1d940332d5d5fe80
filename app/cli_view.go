package app

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"sync"
	"time"

	"github.com/handoff/handoff/stream"
)

// ViewerWindow opens the viewer window for an app. The ui package sets it;
// the app package cannot depend on the UI toolkit.
var ViewerWindow func(ctx context.Context, c *Client, name string) error

func runView(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("view", flag.ContinueOnError)
	snapshot := fs.String("snapshot", "", "save the first frame of the stream as PNG to this file and exit")
	timeout := fs.Duration("timeout", 30*time.Second, "with --snapshot: give up after this long")
	typeText := fs.String("type", "", "with --snapshot: type this text into the app first (for scripts)")
	sound := fs.String("sound", "", "save what the app plays, from the first sound on, as WAV (48 kHz stereo) to this file and exit")
	seconds := fs.Duration("sound-length", 2*time.Second, "with --sound: how much sound to save")
	pos, err := oneName(fs, args, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if *sound != "" {
		return saveSound(ctx, env, name, *sound, *seconds, *timeout)
	}
	if *snapshot == "" {
		if ViewerWindow == nil {
			return errors.New("this build of handoff has no viewer window; use --snapshot")
		}
		return ViewerWindow(ctx, env.client(), name)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var (
		mu      sync.Mutex
		latest  *image.RGBA
		where   string
		lastErr error
	)
	got := make(chan struct{}, 1)
	v := env.client().Viewer(name, func(w string) { mu.Lock(); where = w; mu.Unlock() })
	v.OnFrame(func(img *image.RGBA) {
		mu.Lock()
		if latest == nil || latest.Rect != img.Rect {
			latest = image.NewRGBA(img.Rect)
		}
		copy(latest.Pix, img.Pix)
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	})
	v.OnState(func(s stream.ViewerState) {
		if s.Err != nil {
			mu.Lock()
			lastErr = s.Err
			mu.Unlock()
		}
	})
	noFrame := func() error {
		mu.Lock()
		defer mu.Unlock()
		if lastErr != nil {
			return fmt.Errorf("no frame of %s within %v: %w", name, *timeout, lastErr)
		}
		return fmt.Errorf("no frame of %s within %v", name, *timeout)
	}
	go v.Run(ctx)
	defer v.Close()
	select {
	case <-got:
	case <-ctx.Done():
		return noFrame()
	}
	if *typeText != "" {
		for v.Send(stream.Input{Kind: stream.InputText, Text: *typeText}) != nil {
			select {
			case <-ctx.Done():
				return noFrame()
			case <-time.After(50 * time.Millisecond):
			}
		}
		time.Sleep(time.Second) // save a frame drawn after the typing
	}
	mu.Lock()
	img, from := latest, where
	mu.Unlock()
	if err := writeFileAtomic(*snapshot, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "saved %dx%d frame of %s streamed from %s to %s\n", img.Rect.Dx(), img.Rect.Dy(), name, from, *snapshot)
	return nil
}

func runWeb(ctx context.Context, env *cliEnv, args []string) error {
	pos, err := parseFlags(flag.NewFlagSet("web", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("say which app: handoff web NAME")
	}
	info, err := env.client().Web(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, info.URL)
	fmt.Fprintf(env.stderr, "open it before %s; it shows %s only and ends 12 hours after\n", info.Expires.Local().Format("15:04:05"), info.App)
	return nil
}

// saveSound records length of what the app plays, heard as a viewer hears
// it: the pauses of a silent app are left out.
func saveSound(ctx context.Context, env *cliEnv, name, file string, length, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+length)
	defer cancel()
	want := int(length.Seconds()*48000) * 2
	var (
		mu    sync.Mutex
		pcm   = make([]int16, 0, want)
		where string
	)
	full := make(chan struct{})
	v := env.client().Viewer(name, func(w string) { mu.Lock(); where = w; mu.Unlock() })
	v.OnAudio(func(p []int16) {
		mu.Lock()
		defer mu.Unlock()
		if len(pcm) >= want {
			return
		}
		pcm = append(pcm, p[:min(len(p), want-len(pcm))]...)
		if len(pcm) == want {
			close(full)
		}
	})
	go v.Run(ctx)
	defer v.Close()
	select {
	case <-full:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("heard %v of %s's sound within %v, want %v: is it playing?", time.Duration(len(pcm)/2)*time.Second/48000, name, timeout+length, length)
	}
	mu.Lock()
	samples, from := pcm, where
	mu.Unlock()
	if err := writeFileAtomic(file, func(w io.Writer) error { return writeWAV(w, samples) }); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "saved %v of %s's sound streamed from %s to %s\n", length, name, from, file)
	return nil
}

// writeWAV writes 48 kHz stereo 16-bit samples as a WAV file.
func writeWAV(w io.Writer, pcm []int16) error {
	const rate, channels = 48000, 2
	data := uint32(len(pcm) * 2)
	header := []any{
		[4]byte{'R', 'I', 'F', 'F'}, 36 + data, [4]byte{'W', 'A', 'V', 'E'},
		[4]byte{'f', 'm', 't', ' '}, uint32(16), uint16(1), uint16(channels), uint32(rate),
		uint32(rate * channels * 2), uint16(channels * 2), uint16(16),
		[4]byte{'d', 'a', 't', 'a'}, data,
	}
	for _, v := range header {
		if err := binary.Write(w, binary.LittleEndian, v); err != nil {
			return err
		}
	}
	return binary.Write(w, binary.LittleEndian, pcm)
}

// readWAV reads what writeWAV wrote.
func readWAV(r io.Reader) ([]int16, error) {
	var header [44]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	if string(header[:4]) != "RIFF" || string(header[8:12]) != "WAVE" || string(header[36:40]) != "data" {
		return nil, errors.New("not a WAV file of handoff's")
	}
	pcm := make([]int16, binary.LittleEndian.Uint32(header[40:])/2)
	return pcm, binary.Read(r, binary.LittleEndian, pcm)
}
