package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jfreymuth/pulse/proto"
)

// An app's sound comes from its PulseAudio server: the daemon connects as a
// client (jfreymuth/pulse's protocol layer, over a connection the caller
// opened) and records the monitor of the sink the app plays into, but only
// while some stream plays into it. Its record stream is there from the
// start, corked while nothing plays: a corked stream keeps no sink awake, so
// the server's sink suspends and neither side does any work, but its
// latency still counts. Without it the null sink would start each sound by
// rendering two seconds ahead (its latency when nobody asks for less),
// before the record stream could ask: the viewer lost the first two
// seconds of every sound.

// Audio as it travels: Opus at 48 kHz, stereo, in 20 ms frames.
const (
	audioRate     = 48000
	audioChannels = 2
	audioFrame    = audioRate / 50 // samples per channel in 20 ms
	// audioFrameBytes is one frame of the monitor's s16le samples.
	audioFrameBytes = audioFrame * audioChannels * 2
)

// soundSink is the null sink of the app's sound server (engine.SoundSink):
// its monitor is what the app plays.
const soundSink = "handoff"

// soundLinger is how long recording goes on after the last stream stopped,
// so that what it played last reaches the monitor and the viewers.
const soundLinger = 300 * time.Millisecond

// soundTimeout bounds each request to the sound server.
const soundTimeout = 3 * time.Second

// soundListener records the app's sound while something plays, and hands
// it out in frames of audioFrame stereo samples.
type soundListener struct {
	log  *slog.Logger
	conn net.Conn
	c    *proto.Client
	// onFrame gets each 20 ms of sound, and whether it follows a pause in
	// recording (the clock moved on meanwhile). It is called on the
	// protocol's reading goroutine, one frame at a time; pcm is only valid
	// during the call.
	onFrame func(pcm []int16, afterPause bool)

	changed chan struct{} // a stream started, stopped or went
	done    chan struct{} // the connection ended
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu         sync.Mutex // guards what the reading goroutine shares
	record     uint32     // the record stream, or proto.Undefined
	recording  bool       // the record stream is uncorked
	pending    []byte     // recorded bytes short of a frame
	pcm        []int16
	afterPause bool
}

// listenSound connects to the app's sound server through dial and starts
// following its streams.
func listenSound(ctx context.Context, dial func(context.Context) (net.Conn, error), log *slog.Logger,
	onFrame func(pcm []int16, afterPause bool)) (*soundListener, error) {
	dctx, cancel := context.WithTimeout(ctx, soundTimeout)
	defer cancel()
	conn, err := dial(dctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the app's sound server: %w", err)
	}
	l := &soundListener{
		log: log, conn: conn, onFrame: onFrame, record: proto.Undefined,
		changed: make(chan struct{}, 1), done: make(chan struct{}),
		pcm: make([]int16, audioFrame*audioChannels),
	}
	l.c = &proto.Client{}
	l.c.Callback = l.heard
	l.c.Open(boundedFrames(conn))
	l.c.SetTimeout(soundTimeout)
	if err := l.hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("the app's sound server: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	l.stop = stop
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.follow(runCtx)
	}()
	return l, nil
}

// hello authenticates (the server takes anyone who reaches its socket),
// names this client and subscribes to the sink's streams.
func (l *soundListener) hello() error {
	var auth proto.AuthReply
	if err := l.c.Request(&proto.Auth{Version: l.c.Version(), Cookie: make([]byte, 256)}, &auth); err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	l.c.SetVersion(auth.Version)
	props := proto.PropList{"application.name": proto.PropListString("Handoff viewers")}
	if err := l.c.Request(&proto.SetClientName{Props: props}, &proto.SetClientNameReply{}); err != nil {
		return fmt.Errorf("name the client: %w", err)
	}
	if err := l.c.Request(&proto.Subscribe{Mask: proto.SubscriptionMaskSinkInput}, nil); err != nil {
		return fmt.Errorf("subscribe to its streams: %w", err)
	}
	if err := l.openRecord(); err != nil {
		return fmt.Errorf("record its sink: %w", err)
	}
	return nil
}

// heard is the protocol's callback, on its reading goroutine: it must not
// make requests, whose replies that goroutine reads.
func (l *soundListener) heard(msg any) {
	switch m := msg.(type) {
	case *proto.SubscribeEvent:
		l.poke()
	case *proto.DataPacket:
		l.recorded(m.StreamIndex, m.Data)
	case *proto.RecordStreamKilled:
		l.mu.Lock()
		l.record, l.recording = proto.Undefined, false
		l.mu.Unlock()
		l.poke()
	case *proto.ConnectionClosed:
		l.closed()
	}
}

func (l *soundListener) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *soundListener) closed() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
}

// recorded cuts the record stream's data into frames.
func (l *soundListener) recorded(stream uint32, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stream != l.record || !l.recording {
		return // sent before the cork
	}
	for len(data) > 0 {
		n := min(len(data), audioFrameBytes-len(l.pending))
		l.pending = append(l.pending, data[:n]...)
		data = data[n:]
		if len(l.pending) < audioFrameBytes {
			return
		}
		for i := range l.pcm {
			l.pcm[i] = int16(binary.LittleEndian.Uint16(l.pending[2*i:]))
		}
		l.pending = l.pending[:0]
		after := l.afterPause
		l.afterPause = false
		l.onFrame(l.pcm, after)
	}
}

// follow records while some stream plays, until ctx ends or the server
// goes away.
func (l *soundListener) follow(ctx context.Context) {
	// Closing the connection ends the record stream on the server.
	first := true
	var quiet <-chan time.Time // recording lingers after the last stream
	for {
		playing, err := l.playing()
		if err != nil {
			select {
			case <-l.done:
				return
			case <-ctx.Done():
				return
			default:
			}
			l.log.Warn("the app's sound server did not say what plays", "err", err)
		}
		switch {
		case playing > 0:
			quiet = nil
			if first {
				l.restartClock()
			}
			if err := l.startRecording(); err != nil {
				l.log.Warn("cannot record the app's sound", "err", err)
			}
		case l.isRecording() && quiet == nil:
			quiet = time.After(soundLinger)
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-l.done:
			return
		case <-l.changed:
		case <-quiet:
			quiet = nil
			if n, err := l.playing(); err == nil && n == 0 {
				l.stopRecording()
			}
		}
	}
}

// playing counts the streams that play into the sink (not corked).
func (l *soundListener) playing() (int, error) {
	var inputs proto.GetSinkInputInfoListReply
	if err := l.c.Request(&proto.GetSinkInputInfoList{}, &inputs); err != nil {
		return 0, err
	}
	n := 0
	for _, in := range inputs {
		if !in.Corked {
			n++
		}
	}
	return n, nil
}

// restartClock suspends and resumes the sink, which restarts its clock.
// The null sink renders on the monotonic clock; an app restored on a
// machine whose clock is behind the one it was dumped on would otherwise
// wait, silent, until this machine's clock caught up with the old one.
func (l *soundListener) restartClock() {
	for _, suspend := range []bool{true, false} {
		if err := l.c.Request(&proto.SuspendSink{SinkIndex: proto.Undefined, SinkName: soundSink, Suspend: suspend}, nil); err != nil {
			l.log.Debug("restart the sound sink's clock", "err", err)
			return
		}
	}
}

func (l *soundListener) isRecording() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recording
}

// openRecord opens the record stream on the sink's monitor, in 20 ms
// fragments, corked.
func (l *soundListener) openRecord() error {
	req := proto.CreateRecordStream{
		SampleSpec:             proto.SampleSpec{Format: proto.FormatInt16LE, Channels: audioChannels, Rate: audioRate},
		ChannelMap:             proto.ChannelMap{proto.ChannelLeft, proto.ChannelRight},
		SourceIndex:            proto.Undefined,
		SourceName:             soundSink + ".monitor",
		BufferMaxLength:        proto.Undefined,
		BufferFragSize:         audioFrameBytes,
		AdjustLatency:          true,
		DirectOnInputIndex:     proto.Undefined,
		Properties:             proto.PropList{"media.name": proto.PropListString("viewers")},
		ChannelVolumes:         proto.ChannelVolumes{uint32(proto.VolumeNorm), uint32(proto.VolumeNorm)},
		Corked:                 true,
		DontInhibitAutoSuspend: true,
	}
	var reply proto.CreateRecordStreamReply
	if err := l.c.Request(&req, &reply); err != nil {
		return err
	}
	l.mu.Lock()
	l.record = reply.StreamIndex
	l.mu.Unlock()
	return nil
}

// startRecording uncorks the record stream, unless it records.
func (l *soundListener) startRecording() error {
	l.mu.Lock()
	if l.recording || l.record == proto.Undefined {
		l.mu.Unlock()
		return nil
	}
	l.recording = true
	l.pending = l.pending[:0]
	l.afterPause = true
	index := l.record
	l.mu.Unlock()
	return l.c.Request(&proto.CorkRecordStream{StreamIndex: index, Corked: false}, nil)
}

// stopRecording corks the record stream, if it records.
func (l *soundListener) stopRecording() {
	l.mu.Lock()
	index, was := l.record, l.recording
	l.recording = false
	l.mu.Unlock()
	if !was {
		return
	}
	if err := l.c.Request(&proto.CorkRecordStream{StreamIndex: index, Corked: true}, nil); err != nil {
		l.log.Debug("stop recording the app's sound", "err", err)
	}
}

// Close ends the listener and its connection: before the app is
// checkpointed, since the server's end of it would have its peer outside
// the container.
func (l *soundListener) Close() {
	l.stop()
	l.conn.Close()
	l.wg.Wait()
}

// Done is closed when the connection to the sound server ended.
func (l *soundListener) Done() <-chan struct{} { return l.done }

// maxSoundFrame bounds one frame of the PulseAudio protocol from the
// server, which runs inside the app's container: the protocol layer would
// otherwise allocate whatever length a frame's header claims. PulseAudio's
// own frames stay below 64 KiB for data; replies (lists of streams) are
// larger but far below this.
const maxSoundFrame = 4 << 20

// boundedFrames passes the server's frames through and fails the
// connection on one longer than maxSoundFrame.
func boundedFrames(conn net.Conn) io.ReadWriter {
	return &frameLimiter{conn: conn}
}

type frameLimiter struct {
	conn   net.Conn
	header [20]byte // a frame's descriptor, as far as read
	have   int      // bytes of header read
	left   int      // payload bytes left of the current frame
}

var errSoundFrame = errors.New("the app's sound server sent a frame too long")

func (f *frameLimiter) Write(p []byte) (int, error) { return f.conn.Write(p) }

func (f *frameLimiter) Read(p []byte) (int, error) {
	if f.left == 0 && f.have == len(f.header) {
		f.have = 0 // a frame with no payload ended
	}
	if f.have < len(f.header) {
		// Never read past the descriptor: its length decides what follows.
		n, err := f.conn.Read(p[:min(len(p), len(f.header)-f.have)])
		copy(f.header[f.have:], p[:n])
		f.have += n
		if f.have == len(f.header) {
			length := binary.BigEndian.Uint32(f.header[:4])
			if length > maxSoundFrame {
				f.conn.Close()
				return 0, fmt.Errorf("%w (%d bytes)", errSoundFrame, length)
			}
			f.left = int(length)
		}
		return n, err
	}
	n, err := f.conn.Read(p[:min(len(p), f.left)])
	f.left -= n
	if f.left == 0 {
		f.have = 0
	}
	return n, err
}
