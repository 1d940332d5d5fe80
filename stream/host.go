package stream

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/handoff/handoff/stream/vpx"
)

// HostConfig says which display a Host streams.
type HostConfig struct {
	Display Display // the app's framebuffer and X server
	// Sound, when set, connects to the app's sound server (PulseAudio's
	// native protocol), whose sink's sound viewers then hear. Like the X
	// connections, it is closed by Close, before every checkpoint.
	Sound  func(ctx context.Context) (net.Conn, error)
	MaxFPS int // frames per second at most; 0 means 60
	Logger *slog.Logger
}

// Host streams one app's display to viewers over WebRTC and types their
// input into it. It runs on the machine that runs the app.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[*session]struct{}
	closed   bool

	inputMu sync.Mutex // serializes input and guards inj
	inj     *injector

	clipMu sync.Mutex // guards clip
	clip   *clipboard

	cursorMu sync.Mutex // guards cursor
	cursor   *cursorWatch

	soundMu    sync.Mutex // guards the sound's fields
	audioTrack *webrtc.TrackLocalStaticRTP
	sound      *soundListener // the connection to the sound server, while there is one
	listening  bool           // keepListening runs
	soundWake  chan struct{}  // tells keepListening that viewers left or the host closes
	soundDone  chan struct{}  // closed when keepListening ended

	// udpMux, when set, carries every session's ICE traffic on one socket.
	// Tests set it to put the host in another network namespace: pion
	// opens its sockets on goroutines of its own, outside any namespace
	// the test entered.
	udpMux ice.UDPMux

	// Frames counts encoded frames over the host's life, for tests and
	// benchmarks that check a still screen costs nothing.
	Frames atomic.Int64
	// AudioPackets and AudioBytes count the sound's packets and their
	// Opus bytes over the host's life: a silent app sends none.
	AudioPackets, AudioBytes atomic.Int64
}

// NewHost prepares a host; nothing runs until a viewer connects.
func NewHost(cfg HostConfig) *Host {
	if cfg.MaxFPS <= 0 {
		cfg.MaxFPS = 60
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Host{cfg: cfg, log: cfg.Logger, sessions: map[*session]struct{}{}}
}

// session is one viewer's peer connection.
type session struct {
	h      *Host
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticSample
	cap    *capturer
	enc    *vpx.Encoder
	cancel context.CancelFunc
	done   chan struct{}

	keyframe atomic.Bool
	wake     chan struct{} // a key frame was asked for
	bitrate  atomic.Int64  // bits per second, from the congestion controller
	dc       atomic.Pointer[webrtc.DataChannel]
}

// Answer takes a viewer's offer (SDP with all its candidates) and returns the
// answer; the stream starts once the connection is up.
func (h *Host) Answer(ctx context.Context, offer string) (string, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	c, err := newCapturer(h.cfg.Display)
	if err != nil {
		return "", fmt.Errorf("capture the app's display: %w", err)
	}
	size := c.Size()
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Width: size.X, Height: size.Y, BitrateKbps: initialBitrate / 1000})
	if err != nil {
		c.Close()
		return "", err
	}
	estimates := make(chan cc.BandwidthEstimator, 1)
	api, err := newAPI(rtcOptions{estimates: estimates, udpMux: h.udpMux})
	if err != nil {
		c.Close()
		enc.Close()
		return "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		c.Close()
		enc.Close()
		return "", err
	}
	s := &session{h: h, pc: pc, cap: c, enc: enc, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	s.bitrate.Store(initialBitrate)
	s.keyframe.Store(true)
	fail := func(err error) (string, error) {
		s.release()
		return "", err
	}
	s.track, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "screen", "handoff")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(s.track)
	if err != nil {
		return fail(err)
	}
	if h.cfg.Sound != nil {
		track, err := h.soundTrack()
		if err != nil {
			return fail(err)
		}
		audio, err := pc.AddTrack(track)
		if err != nil {
			return fail(err)
		}
		go drainRTCP(audio)
	}
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != "input" {
			return
		}
		// The viewer's channel opens once DTLS is up on its side too: a
		// frame sent before that may be lost, so start over with a key frame.
		dc.OnOpen(func() {
			s.dc.Store(dc)
			s.requestKeyframe()
			// The viewer draws the app's pointer: tell it the shape now.
			if c, err := h.cursorWatch(); err == nil {
				c.sendCurrent(func(msg []byte) {
					if err := dc.SendText(string(msg)); err != nil {
						h.log.Debug("send the app's cursor to a viewer", "err", err)
					}
				})
			}
		})
		dc.OnMessage(func(msg webrtc.DataChannelMessage) {
			ev, err := ParseInput(msg.Data)
			if err == nil {
				err = h.apply(ev)
			}
			if err != nil {
				h.log.Warn("viewer input not applied", "err", err)
			}
		})
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("viewer's offer: %w", err))
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	if err := gathered(ctx, pc); err != nil {
		return fail(err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		cancel()
		return fail(ErrClosed)
	}
	h.sessions[s] = struct{}{}
	h.mu.Unlock()

	// The clipboard bridge watches the app's copies from the first viewer
	// on; streaming works without it.
	if _, err := h.clipboard(); err != nil {
		h.log.Warn("no clipboard sharing with the app", "err", err)
	}
	// So does the cursor watch; without it viewers show their own pointer.
	if _, err := h.cursorWatch(); err != nil {
		h.log.Warn("the app's cursor is not shown to viewers", "err", err)
	}
	if h.cfg.Sound != nil {
		go h.listen()
	}
	go s.readRTCP(sender)
	go s.repaintAfterGap(runCtx, pc.SCTP().Transport().ICETransport())
	go s.followBitrate(runCtx, estimates)
	go s.run(runCtx)
	return pc.LocalDescription().SDP, nil
}

// clipboard returns the bridge to the display's selections, connecting on
// first use and again after its connection broke.
func (h *Host) clipboard() (*clipboard, error) {
	h.clipMu.Lock()
	defer h.clipMu.Unlock()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if h.clip != nil {
		select {
		case <-h.clip.done:
			h.clip = nil // the display closed it
		default:
			return h.clip, nil
		}
	}
	c, err := dialClipboard(context.Background(), h.cfg.Display, h.log, h.appCopied)
	if err != nil {
		return nil, err
	}
	h.clip = c
	return c, nil
}

// cursorWatch returns the watch on the display's cursor, connecting on
// first use and again after its connection broke.
func (h *Host) cursorWatch() (*cursorWatch, error) {
	h.cursorMu.Lock()
	defer h.cursorMu.Unlock()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if h.cursor != nil {
		select {
		case <-h.cursor.done:
			h.cursor = nil // the display closed it
		default:
			return h.cursor, nil
		}
	}
	c, err := dialCursor(context.Background(), h.cfg.Display, h.log, h.broadcast)
	if err != nil {
		return nil, err
	}
	h.cursor = c
	return c, nil
}

// appCopied sends what the app copied to every viewer.
func (h *Host) appCopied(text string) {
	msg, err := clipboardMessage(text)
	if err != nil {
		h.log.Info("the app's copy is not sent to viewers", "err", err)
		return
	}
	h.broadcast(msg)
}

// broadcast sends a message to every viewer whose channel is open.
func (h *Host) broadcast(msg []byte) {
	h.mu.Lock()
	var dcs []*webrtc.DataChannel
	for s := range h.sessions {
		if dc := s.dc.Load(); dc != nil {
			dcs = append(dcs, dc)
		}
	}
	h.mu.Unlock()
	for _, dc := range dcs {
		// As text: a browser's data channel then hands it over as a string.
		if err := dc.SendText(string(msg)); err != nil {
			h.log.Debug("send a message to a viewer", "err", err)
		}
	}
}

// soundTrack is the track of the app's sound, which every viewer's peer
// connection shares.
func (h *Host) soundTrack() (*webrtc.TrackLocalStaticRTP, error) {
	h.soundMu.Lock()
	defer h.soundMu.Unlock()
	if h.audioTrack == nil {
		t, err := newAudioTrack()
		if err != nil {
			return nil, err
		}
		h.audioTrack = t
	}
	return h.audioTrack, nil
}

// listen starts listening to the app's sound server, unless the host
// listens already. Viewers get the picture without sound while the app has
// no sound server.
func (h *Host) listen() {
	h.soundMu.Lock()
	defer h.soundMu.Unlock()
	if h.listening || h.audioTrack == nil {
		return
	}
	h.listening = true
	h.soundWake = make(chan struct{}, 1)
	h.soundDone = make(chan struct{})
	go h.keepListening(h.soundWake, h.soundDone)
}

// Reconnecting to the sound server: after a failed connection or a lost
// one, at first soon, then less often.
const (
	soundRetry    = 250 * time.Millisecond
	soundRetryMax = 5 * time.Second
)

// keepListening keeps a connection to the app's sound server while the host
// has viewers, reconnecting when it fails or ends (a server that was not up
// yet, or that restarted); it ends with the last viewer, or when the host
// closes, and closes the connection then: nothing is recorded or encoded
// for nobody.
func (h *Host) keepListening(wake <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	backoff := soundRetry
	var l *soundListener
	for {
		// Checked with soundMu held, so that a viewer arriving now either
		// is seen here or starts a new listener.
		h.soundMu.Lock()
		h.mu.Lock()
		closed, viewers := h.closed, len(h.sessions)
		h.mu.Unlock()
		if closed || viewers == 0 {
			if l != nil {
				l.Close()
			}
			h.sound, h.listening = nil, false
			h.soundMu.Unlock()
			return
		}
		h.soundMu.Unlock()
		var ended <-chan struct{}
		if l == nil {
			sender, err := newAudioSender(h.audioTrack, h.log, &h.AudioPackets, &h.AudioBytes)
			if err != nil {
				h.log.Warn("viewers do not hear the app", "err", err)
				h.soundMu.Lock()
				h.listening = false
				h.soundMu.Unlock()
				return // the codec is missing: retrying would not help
			}
			if l, err = listenSound(context.Background(), h.cfg.Sound, h.log, sender.frame); err != nil {
				level := slog.LevelDebug
				if backoff == soundRetry {
					level = slog.LevelInfo // once, not at every retry
				}
				h.log.Log(context.Background(), level, "viewers do not hear the app yet", "err", err, "retry in", backoff)
				l = nil
			} else {
				h.soundMu.Lock()
				h.sound = l
				h.soundMu.Unlock()
				backoff = soundRetry
			}
		}
		var retry <-chan time.Time
		if l != nil {
			ended = l.Done()
		} else {
			retry = time.After(backoff)
			backoff = min(2*backoff, soundRetryMax)
		}
		select {
		case <-wake: // a viewer left, or the host closes
		case <-retry:
		case <-ended:
			h.log.Info("the app's sound server went away", "retry in", backoff)
			h.soundMu.Lock()
			l.Close()
			l, h.sound = nil, nil
			h.soundMu.Unlock()
			select {
			case <-wake:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, soundRetryMax)
		}
	}
}

// quiet wakes the listener when a viewer left: with none left it stops.
func (h *Host) quiet() {
	h.soundMu.Lock()
	defer h.soundMu.Unlock()
	if h.soundWake != nil {
		select {
		case h.soundWake <- struct{}{}:
		default:
		}
	}
}

// drainRTCP reads what viewers report on a sender, which the interceptors
// (NACK, reports) need read, until the sender stops.
func drainRTCP(sender *webrtc.RTPSender) {
	for {
		if _, _, err := sender.ReadRTCP(); err != nil {
			return
		}
	}
}

// readRTCP turns the viewer's picture-loss reports into key frames.
func (s *session) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.requestKeyframe()
			}
		}
	}
}

// Link liveness as the host sees it: ICE checks the pair every
// iceKeepalive (500 ms), so no answer for linkGap means the link was down,
// even if not long enough for ICE to call it lost (iceDisconnected).
const (
	linkCheck = 100 * time.Millisecond
	linkGap   = 800 * time.Millisecond
)

// repaintAfterGap sends a key frame when the viewer answers again after a
// gap in the link. Frames sent during the gap are lost, and a still screen
// sends nothing more that would make the viewer notice and ask: without it
// a short blip left a stale picture until the screen changed again. After a
// longer one the viewer asks too (a PLI when ICE reconnects), but a browser
// may not.
func (s *session) repaintAfterGap(ctx context.Context, ice *webrtc.ICETransport) {
	t := time.NewTicker(linkCheck)
	defer t.Stop()
	var answers uint64
	heard, gap := time.Now(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, ok := ice.GetSelectedCandidatePairStats()
		if !ok {
			continue
		}
		if st.ResponsesReceived != answers {
			answers, heard = st.ResponsesReceived, time.Now()
			if gap {
				gap = false
				s.h.log.Debug("viewer's link back after a gap; sending a key frame")
				s.requestKeyframe()
			}
			continue
		}
		if time.Since(heard) > linkGap {
			gap = true
		}
	}
}

func (s *session) followBitrate(ctx context.Context, estimates <-chan cc.BandwidthEstimator) {
	var est cc.BandwidthEstimator
	select {
	case est = <-estimates:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.bitrate.Store(int64(est.GetTargetBitrate()))
		}
	}
}

// refineAfter is how long the screen stays still before the encoder
// re-codes its last changes sharper: never while it is busy, so that
// refining costs nothing when frames are needed for motion.
const refineAfter = 100 * time.Millisecond

// requestKeyframe has the next frame be a key frame, and sent even if the
// screen is still: a viewer that lost frames gets a whole picture.
func (s *session) requestKeyframe() {
	s.keyframe.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run sends a frame whenever the screen changed, at most MaxFPS a second,
// then a couple of refining frames once it is still, and nothing at all
// after that. The X server's damage reports wake it the moment the app
// draws and say which tiles to compare; without the DAMAGE extension it
// polls the whole framebuffer every frame interval.
func (s *session) run(ctx context.Context) {
	defer close(s.done)
	defer s.release()
	connected := make(chan struct{})
	var once sync.Once
	s.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.cancel()
		}
	})
	if s.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		once.Do(func() { close(connected) })
	}
	// Watch before the first grab, so that nothing drawn after it is missed.
	watch, err := watchDamage(ctx, s.h.cfg.Display)
	if err != nil {
		s.h.log.Info("polling the app's display for changes", "err", err)
	} else {
		defer watch.Close()
	}
	select {
	case <-connected:
	case <-ctx.Done():
		return
	case <-time.After(30 * time.Second):
		s.h.log.Warn("viewer never connected; giving up")
		return
	}
	interval := time.Second / time.Duration(s.h.cfg.MaxFPS)
	var poll <-chan time.Time
	var pollStop func()
	startPolling := func() {
		t := time.NewTicker(interval)
		poll, pollStop = t.C, t.Stop
	}
	if watch == nil {
		startPolling()
	}
	defer func() {
		if pollStop != nil {
			pollStop()
		}
	}()
	// The encoder has a goroutine of its own, so that taking and converting
	// the next frame (Stage) overlaps encoding this one. It says when it has
	// taken a frame's staged pixels (staging the next may start), and it
	// stops before release frees the encoder.
	jobs := make(chan encodeJob)
	taken := make(chan struct{})
	var refineLeft atomic.Bool          // recent changes wait for refining frames
	refinable := make(chan struct{}, 1) // the encoder coded a change: time refining from now
	encCtx, stopEncoder := context.WithCancel(ctx)
	encoderDone := make(chan struct{})
	go func() {
		defer close(encoderDone)
		s.encode(encCtx, jobs, taken, &refineLeft, refinable)
	}()
	defer func() {
		stopEncoder()
		<-encoderDone
	}()
	var slot time.Time      // the earliest the next frame may be taken
	var sent time.Time      // when the last frame was taken
	pending := true         // the first frame: the whole screen
	var changedAt time.Time // when the last frame with changes was taken
	for {
		if !pending && !s.keyframe.Load() {
			var drawn, ended <-chan struct{}
			if watch != nil {
				drawn, ended = watch.Drawn(), watch.Done()
			}
			var refine <-chan time.Time
			stop := func() bool { return false }
			if refineLeft.Load() {
				t := time.NewTimer(time.Until(changedAt.Add(refineAfter)))
				refine, stop = t.C, t.Stop
			}
			select {
			case <-refine:
			case <-ctx.Done():
				return
			case <-encoderDone:
				return
			case <-drawn:
			case <-ended:
				s.h.log.Info("the app's display stopped reporting damage; polling it")
				watch.Close()
				watch = nil
				startPolling()
			case <-poll:
			case <-s.wake:
			case <-refinable:
				// Only to wait again, now for the refining time.
				stop()
				continue
			}
			stop()
		}
		pending = false
		// At most MaxFPS: a change right after a frame waits for the
		// frame interval, and is taken whole at its end. Frames keep to a
		// schedule rather than to an interval since the last one: an app
		// drawing at 60 Hz, a frame taken a little late did not push every
		// later one back until two changes fell in one frame (55 of 60
		// frames a second shown, with CPU to spare).
		if wait := time.Until(slot); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		sent = time.Now()
		slot = nextSlot(slot, sent, interval)
		key := s.keyframe.Swap(false)
		var changed []image.Rectangle
		var err error
		if watch != nil {
			areas, terr := watch.Take()
			if terr != nil {
				s.h.log.Info("polling the app's display for changes", "err", terr)
				watch.Close()
				watch = nil
				startPolling()
				areas = nil // look at everything
			}
			changed, err = s.cap.GrabIn(areas)
			if watch != nil {
				watch.Release()
			}
		} else {
			changed, err = s.cap.Grab()
		}
		if err != nil {
			s.h.log.Error("read the app's display", "err", err)
			s.cancel()
			return
		}
		refining := false
		if len(changed) == 0 && !key {
			// Nothing new: a still screen, unless a recent change is due
			// for its refining frames.
			if !refineLeft.Load() || time.Since(changedAt) < refineAfter {
				continue
			}
			refining = true
		} else {
			changedAt = sent
			refineLeft.Store(true) // coding a change leaves it to refine
		}
		// Converted here, while the encoder codes the frame before.
		for _, r := range changed {
			if err := s.enc.Stage(s.cap.frame, s.cap.Stride(), r); err != nil {
				s.h.log.Error("convert the app's display", "err", err)
				s.cancel()
				return
			}
		}
		select {
		case jobs <- encodeJob{key: key, refining: refining}:
		case <-encoderDone:
			return
		}
		select {
		case <-taken:
		case <-encoderDone:
			return
		}
	}
}

// nextSlot is the earliest the frame after one taken at now may be taken,
// given the slot that one had: one interval later, except that a frame
// late by more than an interval does not let the next ones come faster
// than one more at once.
func nextSlot(slot, now time.Time, interval time.Duration) time.Time {
	return maxTime(slot, now.Add(-interval)).Add(interval)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// encodeJob is one frame for the encoder, whose changes are staged in it:
// whether to make a key frame or a refining one.
type encodeJob struct {
	key      bool
	refining bool
}

// encode takes in, encodes and sends the frames run stages, until ctx ends
// or encoding fails, which ends the session.
func (s *session) encode(ctx context.Context, jobs <-chan encodeJob, taken chan<- struct{}, refineLeft *atomic.Bool, refinable chan<- struct{}) {
	start := time.Now()
	last := start
	kbps := s.enc.Config().BitrateKbps
	for {
		var j encodeJob
		select {
		case <-ctx.Done():
			return
		case j = <-jobs:
		}
		if want := int(s.bitrate.Load() / 1000); want != kbps {
			if err := s.enc.SetBitrate(want); err == nil {
				kbps = want
			}
		}
		now := time.Now()
		s.enc.Take()
		select {
		case taken <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if j.refining && !s.enc.Refining() {
			refineLeft.Store(false)
			continue
		}
		var frame []byte
		var err error
		if j.refining {
			frame, err = s.enc.Refine(now.Sub(start), now.Sub(last))
		} else {
			frame, _, err = s.enc.EncodePicture(now.Sub(start), now.Sub(last), j.key)
		}
		refineLeft.Store(s.enc.Refining())
		if !j.refining && refineLeft.Load() {
			select {
			case refinable <- struct{}{}:
			default:
			}
		}
		if err != nil {
			s.h.log.Error("encode the app's display", "err", err)
			s.cancel()
			return
		}
		if frame == nil {
			if j.key {
				s.requestKeyframe() // dropped: the next one is a key frame
			}
			continue
		}
		s.h.Frames.Add(1)
		if err := s.track.WriteSample(media.Sample{Data: frame, Duration: now.Sub(last)}); err != nil && !errors.Is(err, context.Canceled) {
			s.h.log.Debug("send frame", "err", err)
		}
		last = now
	}
}

// release frees what a session holds. Only the run loop calls it once it
// started, since the loop is what uses the capturer and the encoder.
func (s *session) release() {
	s.pc.Close()
	s.h.mu.Lock()
	delete(s.h.sessions, s)
	s.h.mu.Unlock()
	s.h.quiet()
	s.cap.Close()
	s.enc.Close()
}

// apply types one event into the display, connecting to it on first use.
func (h *Host) apply(ev Input) error {
	h.inputMu.Lock()
	defer h.inputMu.Unlock()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if ev.Kind == InputClipboard {
		c, err := h.clipboard()
		if err != nil {
			return err
		}
		return c.Set(ev.Text)
	}
	if h.inj == nil {
		inj, err := dialInjector(context.Background(), h.cfg.Display)
		if err != nil {
			return err
		}
		h.inj = inj
	}
	if err := h.inj.Apply(ev); err != nil {
		// A broken connection is reopened on the next event.
		h.inj.conn.Close()
		h.inj = nil
		return err
	}
	return nil
}

// Viewers is the number of connected viewers.
func (h *Host) Viewers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Close ends every viewer's stream and drops the connections to the display
// (each stream's damage watch, input, clipboard and cursor watch) and to
// the sound server. It must happen before the app is checkpointed: the
// display's end of those connections would have its peer outside the
// container. Viewers reconnect to wherever the app runs next; text a viewer
// put on the app's clipboard goes with the clipboard connection.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	sessions := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	for _, s := range sessions {
		s.cancel()
		<-s.done
	}
	h.inputMu.Lock()
	if h.inj != nil {
		h.inj.Close()
		h.inj = nil
	}
	h.inputMu.Unlock()
	h.clipMu.Lock()
	if h.clip != nil {
		h.clip.Close()
		h.clip = nil
	}
	h.clipMu.Unlock()
	h.cursorMu.Lock()
	if h.cursor != nil {
		h.cursor.Close()
		h.cursor = nil
	}
	h.cursorMu.Unlock()
	// The listener closes its connection when it sees the host closed;
	// wait for that, since the connection must be gone before a dump.
	h.quiet()
	h.soundMu.Lock()
	done := h.soundDone
	h.soundMu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}
