package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/handoff/handoff/stream/vpx"
)

// Signal carries a viewer's offer to the machine running the app and
// returns its answer. The daemon routes it: to its own Host when the app runs
// here, over the peer channel when it runs on a peer.
type Signal func(ctx context.Context, offer string) (answer string, err error)

// ViewerState is what a viewer is doing, for a window's title or overlay.
type ViewerState struct {
	Streaming bool
	// Err says why there is no picture: the link is down (ErrLinkLost) and
	// the connection waits for it, or why the last connection ended.
	Err error
}

// Viewer receives an app's display and sends input back. It reconnects by
// itself, through the same Signal, when the connection drops: after a
// network blip, or when the app moved and the daemon routes it elsewhere.
type Viewer struct {
	signal Signal
	log    *slog.Logger

	mu          sync.Mutex
	onFrame     func(*image.RGBA)
	onState     func(ViewerState)
	onClipboard func(string)
	onCursor    func(image.Image, int, int)
	onAudio     func([]int16)
	dc          *webrtc.DataChannel
	cancel      context.CancelFunc
	closed      bool

	// udpMux, when set, carries ICE on one socket: tests use it to put the
	// viewer in a network namespace (see Host.udpMux).
	udpMux ice.UDPMux
}

// NewViewer makes a viewer that connects through signal once Run is called.
func NewViewer(signal Signal, log *slog.Logger) *Viewer {
	if log == nil {
		log = slog.Default()
	}
	return &Viewer{signal: signal, log: log}
}

// OnFrame sets the function each decoded frame goes to. The image belongs to
// the viewer and is only valid during the call: copy what you keep.
func (v *Viewer) OnFrame(f func(*image.RGBA)) {
	v.mu.Lock()
	v.onFrame = f
	v.mu.Unlock()
}

// OnState sets the function told when streaming starts or stops.
func (v *Viewer) OnState(f func(ViewerState)) {
	v.mu.Lock()
	v.onState = f
	v.mu.Unlock()
}

// OnClipboard sets the function told the text the app copied, to put on the
// viewer's own clipboard. Send an InputClipboard event for the other way.
func (v *Viewer) OnClipboard(f func(string)) {
	v.mu.Lock()
	v.onClipboard = f
	v.mu.Unlock()
}

// OnCursor sets the function told the app's cursor shape, when the
// connection starts and whenever the app changes it: an image of at most
// 128x128 pixels and its hot spot, the pixel that points. The framebuffer
// holds no pointer, so a viewer draws this one at its own mouse position.
// The image is the caller's to keep.
func (v *Viewer) OnCursor(f func(img image.Image, hotX, hotY int)) {
	v.mu.Lock()
	v.onCursor = f
	v.mu.Unlock()
}

// OnAudio sets the function the app's sound goes to, as it arrives: 48 kHz
// stereo samples, left and right interleaved, usually 20 ms at a time.
// Nothing arrives while the app is silent. pcm is only valid during the
// call.
func (v *Viewer) OnAudio(f func(pcm []int16)) {
	v.mu.Lock()
	v.onAudio = f
	v.mu.Unlock()
}

// ErrLinkLost is the state's error while the network to the app is down
// and the viewer waits for it to come back, or to fail and reconnect.
var ErrLinkLost = errors.New("lost the connection to the app")

// ErrNotConnected is returned for input sent while no stream is up.
var ErrNotConnected = errors.New("not connected to the app")

// Send passes one input event to the app.
func (v *Viewer) Send(ev Input) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	v.mu.Lock()
	dc := v.dc
	v.mu.Unlock()
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen {
		return ErrNotConnected
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return dc.Send(b)
}

// Run connects and keeps reconnecting until ctx ends or Close is called.
func (v *Viewer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		cancel()
		return ErrClosed
	}
	v.cancel = cancel
	v.mu.Unlock()
	defer cancel()
	backoff := 200 * time.Millisecond
	for {
		started := time.Now()
		err := v.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		v.state(ViewerState{Err: err})
		v.log.Info("viewer reconnecting", "err", err, "in", backoff)
		if time.Since(started) > 10*time.Second {
			backoff = 200 * time.Millisecond // it had been working
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 3*time.Second)
	}
}

// Close stops the viewer.
func (v *Viewer) Close() error {
	v.mu.Lock()
	v.closed = true
	cancel := v.cancel
	v.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return nil
}

func (v *Viewer) state(s ViewerState) {
	v.mu.Lock()
	f := v.onState
	v.mu.Unlock()
	if f != nil {
		f(s)
	}
}

// session is one connection, from offer to its end.
func (v *Viewer) session(ctx context.Context) error {
	api, err := newAPI(rtcOptions{udpMux: v.udpMux})
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ended := make(chan error, 2)
	end := func(err error) {
		select {
		case ended <- err:
		default:
		}
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return err
	}
	dc, err := pc.CreateDataChannel("input", nil)
	if err != nil {
		return err
	}
	// streaming says whether the user sees a live picture: it goes false
	// when the link is lost and true again with the next decoded frame.
	var streaming, lost atomic.Bool
	var ssrc atomic.Uint32
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if track.Kind() == webrtc.RTPCodecTypeAudio {
			// The picture decides when a session ends; sound comes and goes.
			if err := v.receiveAudio(ctx, track); err != nil && ctx.Err() == nil {
				v.log.Debug("the app's sound ended", "err", err)
			}
			return
		}
		ssrc.Store(uint32(track.SSRC()))
		end(v.receive(ctx, pc, track, &streaming))
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			// ICE gave up (iceFailed after the link was lost): start over.
			end(fmt.Errorf("%w: no answer from its machine", ErrLinkLost))
		case webrtc.PeerConnectionStateClosed:
			end(errors.New("the app's machine closed the stream"))
		case webrtc.PeerConnectionStateDisconnected:
			// ICE may recover from a blip by itself: say so, and wait for
			// it to come back or fail.
			lost.Store(true)
			if streaming.CompareAndSwap(true, false) {
				v.state(ViewerState{Err: ErrLinkLost})
			}
		case webrtc.PeerConnectionStateConnected:
			// Back after a blip: frames sent meanwhile were lost and a still
			// screen sends no more, so ask for a key frame. Its arrival
			// reports streaming again.
			if lost.Swap(false) && ssrc.Load() != 0 {
				pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc.Load()}})
			}
		}
	})
	dc.OnClose(func() { end(errors.New("the app's machine closed the stream")) })
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		m, err := parseHostMessage(msg.Data)
		if err != nil {
			v.log.Warn("message from the app's machine ignored", "err", err)
			return
		}
		v.mu.Lock()
		onClipboard, onCursor := v.onClipboard, v.onCursor
		v.mu.Unlock()
		switch {
		case m.Kind == InputClipboard && onClipboard != nil:
			onClipboard(m.Text)
		case m.Kind == kindCursor && onCursor != nil:
			onCursor(m.cursor, m.HotX, m.HotY)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	if err := gathered(ctx, pc); err != nil {
		return err
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	answer, err := v.signal(sctx, pc.LocalDescription().SDP)
	scancel()
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("the app's answer: %w", err)
	}
	v.mu.Lock()
	v.dc = dc
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if v.dc == dc {
			v.dc = nil
		}
		v.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-ended:
		return err
	}
}

// receive reassembles, decodes and hands out frames until the track ends.
func (v *Viewer) receive(ctx context.Context, pc *webrtc.PeerConnection, track *webrtc.TrackRemote, streaming *atomic.Bool) error {
	dec, err := vpx.NewDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	asm := newAssembler()
	var img *image.RGBA
	haveKey := false
	var lastPLI time.Time
	askKeyframe := func() {
		if time.Since(lastPLI) > 300*time.Millisecond {
			pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}})
			lastPLI = time.Now()
		}
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return fmt.Errorf("the stream ended: %w", err)
		}
		frame, lost := asm.push(pkt)
		if frame == nil {
			continue
		}
		// A VP8 key frame has bit 0 of its first byte clear.
		key := len(frame) > 0 && frame[0]&1 == 0
		if lost && !key {
			haveKey = false
		}
		if !haveKey && !key {
			askKeyframe()
			continue
		}
		haveKey = true
		var shown bool
		img, shown, err = dec.Decode(frame, img)
		if err != nil {
			v.log.Debug("decode frame", "err", err)
			haveKey = false
			askKeyframe()
			continue
		}
		if !shown {
			continue
		}
		if streaming.CompareAndSwap(false, true) {
			v.state(ViewerState{Streaming: true})
		}
		v.mu.Lock()
		f := v.onFrame
		v.mu.Unlock()
		if f != nil {
			f(img)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// receiveAudio decodes the app's sound and hands it out until the track
// ends.
func (v *Viewer) receiveAudio(ctx context.Context, track *webrtc.TrackRemote) error {
	dec, err := newAudioDecoder()
	if err != nil {
		return err
	}
	out := func(pcm []int16) {
		v.mu.Lock()
		f := v.onAudio
		v.mu.Unlock()
		if f != nil {
			f(pcm)
		}
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return err
		}
		if err := dec.decode(pkt, out); err != nil {
			v.log.Debug("decode the app's sound", "err", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
