package app

import (
	"context"
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
	pos, err := oneName(fs, args, 1)
	if err != nil {
		return err
	}
	name := pos[0]
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
