package ui

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jfreymuth/pulse"
	"github.com/jfreymuth/pulse/proto"
)

// The viewers' sound plays through the desktop's own sound server, which on
// Linux desktops speaks PulseAudio's protocol (PulseAudio, or PipeWire's
// pipewire-pulse): jfreymuth/pulse, in pure Go, is the client the daemon
// already uses for the apps' servers, so the tray needs no ALSA or cgo for
// it. Only one viewer plays at a time, so that two viewers of one app, or
// of two apps, do not sound over each other.

// soundFrom says whose sound plays: the viewer with the keyboard focus, or
// else the one opened last (opened is in the order the viewers opened).
// A muted viewer plays nothing, and does not hand its turn to another.
func soundFrom(focused string, opened []string, muted map[string]bool) string {
	who := focused
	if who == "" || !slices.Contains(opened, who) {
		if len(opened) == 0 {
			return ""
		}
		who = opened[len(opened)-1]
	}
	if muted[who] {
		return ""
	}
	return who
}

// Playback buffering: a stream starts once soundStart is buffered, keeps at
// most soundMax (older sound is dropped, so that clock drift between the
// machines cannot add latency), and stops after soundIdle without sound,
// so that a silent app costs the desktop nothing.
const (
	soundStart   = 40 * time.Millisecond
	soundMax     = 200 * time.Millisecond
	soundIdle    = time.Second
	soundLatency = 0.06 // the desktop server's buffer, in seconds
	soundRate    = 48000
)

func samplesIn(d time.Duration) int { return int(d.Seconds()*soundRate) * 2 }

// speaker plays the sound of the viewer whose turn it is.
type speaker struct {
	log *slog.Logger

	mu       sync.Mutex
	who      string // the viewer that plays, "" for none
	buf      []int16
	client   *pulse.Client
	stream   *pulse.PlaybackStream
	playing  bool
	starting bool
	heard    time.Time // when sound last arrived
	broken   bool      // no desktop sound server: do not try again
}

func newSpeaker(log *slog.Logger) *speaker { return &speaker{log: log} }

// turn gives the speaker to a viewer ("" for none); what another viewer
// left in the buffer is dropped.
func (s *speaker) turn(who string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.who != who {
		s.who = who
		s.buf = s.buf[:0]
	}
}

// play queues sound from viewer from, if it is its turn. Called on the
// viewer's goroutine.
func (s *speaker) play(from string, pcm []int16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from != s.who || s.broken {
		return
	}
	s.buf = append(s.buf, pcm...)
	if over := len(s.buf) - samplesIn(soundMax); over > 0 {
		s.buf = s.buf[over:]
	}
	s.heard = time.Now()
	if !s.playing && !s.starting && len(s.buf) >= samplesIn(soundStart) {
		s.starting = true
		go s.start()
	}
}

// start connects to the desktop's sound server, once, and starts the
// stream; Start blocks until the server has the first sound.
func (s *speaker) start() {
	s.mu.Lock()
	stream := s.stream
	s.mu.Unlock()
	if stream == nil {
		c, err := pulse.NewClient(pulse.ClientApplicationName("Handoff"), pulse.ClientApplicationIconName("handoff"))
		if err == nil {
			stream, err = c.NewPlayback(pulse.Int16Reader(s.read), pulse.PlaybackStereo,
				pulse.PlaybackSampleRate(soundRate), pulse.PlaybackLatency(soundLatency),
				pulse.PlaybackMediaName("Apps shown by Handoff"))
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			s.log.Warn("the apps' sound does not play here: no desktop sound server", "err", err)
			s.mu.Lock()
			s.broken, s.starting = true, false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.client, s.stream = c, stream
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.playing = true
	s.mu.Unlock()
	stream.Start()
	s.mu.Lock()
	s.starting = false
	s.mu.Unlock()
}

// read fills the server's request from the buffer, with silence for what
// has not arrived; after soundIdle without sound it ends the stream's data
// (the stream stops until sound comes again).
func (s *speaker) read(out []int16) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := copy(out, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	clear(out[n:])
	if n == 0 && time.Since(s.heard) > soundIdle {
		s.playing = false
		go s.cork()
		return 0, pulse.EndOfData
	}
	return len(out), nil
}

// cork pauses the stream on the desktop's server while no sound comes, so
// that the desktop's sink may suspend; Start uncorks it.
func (s *speaker) cork() {
	s.mu.Lock()
	c, stream, playing := s.client, s.stream, s.playing
	s.mu.Unlock()
	if c == nil || stream == nil || playing {
		return
	}
	if err := c.RawRequest(&proto.CorkPlaybackStream{StreamIndex: stream.StreamIndex(), Corked: true}, nil); err != nil {
		s.log.Debug("pause the apps' sound", "err", err)
	}
}

// Close ends the stream and the connection to the desktop's server.
func (s *speaker) Close() {
	s.mu.Lock()
	c, stream := s.client, s.stream
	s.client, s.stream, s.broken = nil, nil, true
	s.mu.Unlock()
	if stream != nil {
		stream.Close()
	}
	if c != nil {
		c.Close()
	}
}
