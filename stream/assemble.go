package stream

import (
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// assembler puts VP8 frames back together from RTP packets. A frame is
// handed out the moment its last packet arrives: pion's samplebuilder waits
// for the first packet of the next frame, which on a screen that just went
// still never comes, and the last change would never be shown.
type assembler struct {
	pending  map[uint32]*partialFrame // by RTP timestamp
	last     uint32                   // timestamp of the last frame handed out
	lastTail uint16                   // sequence number of its last packet
	started  bool
}

type partialFrame struct {
	parts    map[uint16][]byte // VP8 payload by sequence number
	head     uint16            // sequence number of the first packet
	tail     uint16            // of the packet with the marker bit
	hasHead  bool
	hasTail  bool
	received int
}

// maxPendingFrames bounds the memory a broken stream can take.
const maxPendingFrames = 32

func newAssembler() *assembler {
	return &assembler{pending: map[uint32]*partialFrame{}}
}

// push adds one packet. When it completes a frame, push returns the frame
// and whether frames before it were lost (the decoder then needs a key frame).
func (a *assembler) push(pkt *rtp.Packet) (frame []byte, lost bool) {
	if a.started && int32(pkt.Timestamp-a.last) <= 0 {
		return nil, false // a frame already shown or given up on
	}
	var vp8 codecs.VP8Packet
	payload, err := vp8.Unmarshal(pkt.Payload)
	if err != nil {
		return nil, false
	}
	f := a.pending[pkt.Timestamp]
	if f == nil {
		if len(a.pending) >= maxPendingFrames {
			a.dropOlderThan(pkt.Timestamp)
		}
		f = &partialFrame{parts: map[uint16][]byte{}}
		a.pending[pkt.Timestamp] = f
	}
	if _, dup := f.parts[pkt.SequenceNumber]; dup {
		return nil, false
	}
	f.parts[pkt.SequenceNumber] = append([]byte(nil), payload...)
	f.received++
	if vp8.S == 1 && vp8.PID == 0 {
		f.head, f.hasHead = pkt.SequenceNumber, true
	}
	if pkt.Marker {
		f.tail, f.hasTail = pkt.SequenceNumber, true
	}
	if !f.hasHead || !f.hasTail || int(uint16(f.tail-f.head))+1 != f.received {
		return nil, false
	}
	for seq := f.head; ; seq++ {
		frame = append(frame, f.parts[seq]...)
		if seq == f.tail {
			break
		}
	}
	delete(a.pending, pkt.Timestamp)
	// Frames in between that never completed, or never arrived at all
	// (a gap in sequence numbers), are lost.
	lost = a.dropOlderThan(pkt.Timestamp) || (a.started && f.head != a.lastTail+1)
	a.last, a.lastTail, a.started = pkt.Timestamp, f.tail, true
	return frame, lost
}

// dropOlderThan forgets incomplete frames older than ts and reports whether
// there were any.
func (a *assembler) dropOlderThan(ts uint32) bool {
	dropped := false
	for t := range a.pending {
		if int32(t-ts) < 0 {
			delete(a.pending, t)
			dropped = true
		}
	}
	return dropped
}
