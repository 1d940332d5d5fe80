package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"gopkg.in/hraban/opus.v2"
)

// The app's sound travels as Opus (libopus through hraban/opus: the
// reference codec, which browsers decode) in 20 ms packets on one RTP
// track that every viewer's peer connection shares. Frames of digital
// silence are not encoded or sent: their RTP timestamps are skipped, which
// receivers take as a pause (as with Opus's own discontinuous
// transmission, minus its keep-alive packets).

// audioBitrate suits music in stereo; speech needs far less, and the
// encoder spends fewer bits on what is simple.
const audioBitrate = 96_000

// audioMaxPacket bounds one encoded 20 ms frame (libopus's recommended
// buffer size).
const audioMaxPacket = 4000

// audioSender encodes what the app plays and sends it to every viewer.
type audioSender struct {
	log   *slog.Logger
	track *webrtc.TrackLocalStaticRTP
	enc   *opus.Encoder
	buf   []byte

	seq    uint16
	ts     uint32    // RTP timestamp of the next frame
	start  time.Time // the RTP clock's origin
	tsBase uint32
	paused bool // the last frame was not sent: the next one starts a talk spurt

	packets, bytes *atomic.Int64 // the host's counters
}

func newAudioSender(track *webrtc.TrackLocalStaticRTP, log *slog.Logger, packets, bytes *atomic.Int64) (*audioSender, error) {
	enc, err := opus.NewEncoder(audioRate, audioChannels, opus.AppAudio)
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	if err := enc.SetBitrate(audioBitrate); err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	base := rand.Uint32()
	return &audioSender{
		log: log, track: track, enc: enc, buf: make([]byte, audioMaxPacket),
		seq: uint16(rand.Uint32()), ts: base, tsBase: base, start: time.Now(), paused: true,
		packets: packets, bytes: bytes,
	}, nil
}

// frame encodes and sends 20 ms of sound; afterPause says recording had
// stopped before it, and the RTP clock catches up with the time that
// passed.
func (a *audioSender) frame(pcm []int16, afterPause bool) {
	if afterPause {
		now := a.tsBase + uint32(time.Since(a.start).Seconds()*audioRate)/audioFrame*audioFrame
		if int32(now-a.ts) > 0 {
			a.ts = now
		}
		a.paused = true
	}
	ts := a.ts
	a.ts += audioFrame
	if digitalSilence(pcm) {
		a.paused = true
		return
	}
	n, err := a.enc.Encode(pcm, a.buf)
	if err != nil {
		a.log.Warn("encode the app's sound", "err", err)
		return
	}
	pkt := &rtp.Packet{
		Header:  rtp.Header{Version: 2, Marker: a.paused, SequenceNumber: a.seq, Timestamp: ts},
		Payload: a.buf[:n],
	}
	a.seq++
	a.paused = false
	a.packets.Add(1)
	a.bytes.Add(int64(n))
	if err := a.track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Debug("send the app's sound", "err", err)
	}
}

// digitalSilence reports whether every sample is zero: what a sink plays
// with nothing in it, or with streams that play silence.
func digitalSilence(pcm []int16) bool {
	for _, s := range pcm {
		if s != 0 {
			return false
		}
	}
	return true
}

// newAudioTrack is the track every viewer's peer connection gets the
// app's sound on.
func newAudioTrack() (*webrtc.TrackLocalStaticRTP, error) {
	return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: audioRate, Channels: audioChannels,
	}, "sound", "handoff")
}

// audioDecoder turns the Opus packets of the app's sound back into 48 kHz
// stereo samples, concealing a few lost packets.
type audioDecoder struct {
	dec     *opus.Decoder
	pcm     []int16
	lastSeq uint16
	started bool
}

func newAudioDecoder() (*audioDecoder, error) {
	dec, err := opus.NewDecoder(audioRate, audioChannels)
	if err != nil {
		return nil, fmt.Errorf("opus decoder: %w", err)
	}
	// 120 ms is the longest Opus packet.
	return &audioDecoder{dec: dec, pcm: make([]int16, audioRate/1000*120*audioChannels)}, nil
}

// maxConcealed is how many lost packets in a row are filled in with
// libopus's loss concealment; beyond that the gap is left silent.
const maxConcealed = 3

// decode hands out the samples of one packet (and of the packets lost just
// before it) to out, interleaved left and right. pcm is only valid during
// the call.
func (d *audioDecoder) decode(pkt *rtp.Packet, out func(pcm []int16)) error {
	if d.started {
		lost := pkt.SequenceNumber - d.lastSeq - 1
		if lost >= 0x8000 {
			return nil // late or repeated
		}
		if lost > 0 && lost <= maxConcealed && !pkt.Marker {
			for range lost {
				if err := d.dec.DecodePLC(d.pcm[:audioFrame*audioChannels]); err == nil {
					out(d.pcm[:audioFrame*audioChannels])
				}
			}
		}
	}
	d.started = true
	d.lastSeq = pkt.SequenceNumber
	n, err := d.dec.Decode(pkt.Payload, d.pcm)
	if err != nil {
		return err
	}
	out(d.pcm[:n*audioChannels])
	return nil
}
