package stream

import (
	"math"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
)

// toneFrames is n frames of a 440 Hz sine at a quarter of full scale.
func toneFrames(n int) [][]int16 {
	frames := make([][]int16, n)
	for f := range frames {
		pcm := make([]int16, audioFrame*audioChannels)
		for i := 0; i < audioFrame; i++ {
			v := int16(0.25 * 32767 * math.Sin(2*math.Pi*440*float64(f*audioFrame+i)/audioRate))
			pcm[2*i], pcm[2*i+1] = v, v
		}
		frames[f] = pcm
	}
	return frames
}

func TestAudioSenderSkipsSilence(t *testing.T) {
	track, err := newAudioTrack()
	if err != nil {
		t.Fatal(err)
	}
	var packets, bytes atomic.Int64
	a, err := newAudioSender(track, nil, &packets, &bytes)
	if err != nil {
		t.Fatal(err)
	}
	tone := toneFrames(3)
	silence := make([]int16, audioFrame*audioChannels)
	seq, ts := a.seq, a.ts
	a.frame(tone[0], true)
	a.frame(silence, false)
	a.frame(silence, false)
	if packets.Load() != 1 {
		t.Fatalf("%d packets for one frame of tone and two of silence, want 1", packets.Load())
	}
	a.frame(tone[1], false)
	// The silence's time passes on the RTP clock, its sequence numbers do
	// not (nothing was lost), and the packet after it starts a talk spurt.
	if a.seq != seq+2 || a.ts != ts+4*audioFrame || a.paused {
		t.Errorf("after tone, 2 silent frames, tone: seq +%d, ts +%d, want +2, +%d", a.seq-seq, a.ts-ts, 4*audioFrame)
	}
	if bytes.Load() <= 0 || bytes.Load() > 2*audioMaxPacket {
		t.Errorf("%d Opus bytes for two frames", bytes.Load())
	}
}

func TestAudioRoundTrip(t *testing.T) {
	enc, err := newAudioSender(nil, nil, new(atomic.Int64), new(atomic.Int64))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := newAudioDecoder()
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	for i, pcm := range toneFrames(50) {
		n, err := enc.enc.Encode(pcm, enc.buf)
		if err != nil {
			t.Fatal(err)
		}
		pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i)}, Payload: enc.buf[:n]}
		if err := dec.decode(pkt, func(p []int16) { out = append(out, p...) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != 50*audioFrame*audioChannels {
		t.Fatalf("decoded %d samples of 50 frames, want %d", len(out), 50*audioFrame*audioChannels)
	}
}

// BenchmarkOpusEncode is libopus's cost for one 20 ms stereo frame of
// music-like sound at the bitrate the host uses.
func BenchmarkOpusEncode(b *testing.B) {
	a, err := newAudioSender(nil, nil, new(atomic.Int64), new(atomic.Int64))
	if err != nil {
		b.Fatal(err)
	}
	frames := toneFrames(50)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.enc.Encode(frames[i%len(frames)], a.buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6*100, "%cpu-realtime")
}
