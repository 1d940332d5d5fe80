package stream

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// vp8Packets splits a frame into RTP packets of at most size payload bytes
// with a minimal VP8 payload descriptor (S bit on the first).
func vp8Packets(seq uint16, ts uint32, frame []byte, size int) []*rtp.Packet {
	var out []*rtp.Packet
	for i := 0; i < len(frame); i += size {
		desc := byte(0)
		if i == 0 {
			desc = 0x10
		}
		end := min(i+size, len(frame))
		out = append(out, &rtp.Packet{
			Header:  rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: end == len(frame)},
			Payload: append([]byte{desc}, frame[i:end]...),
		})
		seq++
	}
	return out
}

func TestAssembler(t *testing.T) {
	f1 := bytes.Repeat([]byte{0x10}, 25) // "key" frames: bit 0 clear
	f2 := bytes.Repeat([]byte{0x21}, 12)
	f3 := bytes.Repeat([]byte{0x31}, 7)
	p1 := vp8Packets(65534, 1000, f1, 10) // wraps the sequence number
	p2 := vp8Packets(1, 4000, f2, 10)
	p3 := vp8Packets(3, 7000, f3, 10)
	type want struct {
		frame []byte
		lost  bool
	}
	tests := []struct {
		name  string
		order []*rtp.Packet
		want  []want
	}{
		{"in order", append(append(append([]*rtp.Packet{}, p1...), p2...), p3...),
			[]want{{f1, false}, {f2, false}, {f3, false}}},
		{"reordered inside a frame", []*rtp.Packet{p1[2], p1[0], p1[1], p2[1], p2[0]},
			[]want{{f1, false}, {f2, false}}},
		{"a packet lost", []*rtp.Packet{p1[0], p1[2], p2[0], p2[1], p3[0]},
			[]want{{f2, true}, {f3, false}}},
		{"a frame lost whole", append(append([]*rtp.Packet{}, p1...), p3...),
			[]want{{f1, false}, {f3, true}}},
		{"duplicates and late packets", []*rtp.Packet{p2[0], p2[0], p2[1], p1[0], p1[1], p1[2]},
			[]want{{f2, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAssembler()
			var got []want
			for _, p := range tt.order {
				if f, lost := a.push(p); f != nil {
					got = append(got, want{f, lost})
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i].frame, tt.want[i].frame) || got[i].lost != tt.want[i].lost {
					t.Errorf("frame %d = %x lost=%v, want %x lost=%v", i, got[i].frame, got[i].lost, tt.want[i].frame, tt.want[i].lost)
				}
			}
		})
	}
}
