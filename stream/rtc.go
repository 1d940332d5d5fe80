package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/webrtc/v4"
)

// Bitrate bounds for the congestion controller, bits per second. Screens
// are mostly still; the ceiling matters only for full-screen motion on a LAN.
const (
	initialBitrate = 4_000_000
	minBitrate     = 300_000
	maxBitrate     = 25_000_000
)

// ICE liveness on a LAN: a check every half second while connected, the link
// counts as lost after 2 s without a packet from the peer (a viewer shows it
// at once) and as failed 4 s after that, when the viewer starts a new
// connection and the host frees the old one. pion's defaults (checks every
// 2 s, lost after 5 s, failed 25 s later) are meant for the internet and left
// a viewer frozen for half a minute after a blip.
const (
	iceKeepalive    = 500 * time.Millisecond
	iceDisconnected = 2 * time.Second
	iceFailed       = 4 * time.Second
)

// rtcOptions are what differs between the peer connections newAPI builds.
type rtcOptions struct {
	// estimates, when not nil, hears the sender's congestion controller's
	// estimator.
	estimates chan<- cc.BandwidthEstimator
	// udpMux, when not nil, carries ICE on that one socket instead of one
	// socket per interface.
	udpMux ice.UDPMux
}

// newAPI builds a pion API for one peer connection. Peers are on one LAN or
// one machine: host candidates only (loopback included, for a viewer on the
// same machine), no STUN, and no mDNS candidates, which would put multicast
// on the network for addresses both sides already know.
func newAPI(opts rtcOptions) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: "transport-cc"}},
		},
		PayloadType: 96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	// The app's sound (see audio.go).
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: audioRate, Channels: audioChannels,
			SDPFmtpLine: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1",
		},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	if estimates := opts.estimates; estimates != nil {
		ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
			// No pacer: a key frame leaves at once rather than trickling
			// out at the estimated rate, which on a LAN only adds latency.
			return gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(initialBitrate),
				gcc.SendSideBWEMinBitrate(minBitrate), gcc.SendSideBWEMaxBitrate(maxBitrate),
				gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
		})
		if err != nil {
			return nil, err
		}
		ccf.OnNewPeerConnection(func(_ string, est cc.BandwidthEstimator) {
			select {
			case estimates <- est:
			default:
			}
		})
		reg.Add(ccf)
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, reg); err != nil {
			return nil, err
		}
	}
	var s webrtc.SettingEngine
	s.SetIncludeLoopbackCandidate(true)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICETimeouts(iceDisconnected, iceFailed, iceKeepalive)
	if opts.udpMux != nil {
		s.SetICEUDPMux(opts.udpMux)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s)), nil
}

// gathered waits until the peer connection has all its candidates, so that
// one offer and one answer carry everything: signalling is a single request.
func gathered(ctx context.Context, pc *webrtc.PeerConnection) error {
	done := webrtc.GatheringCompletePromise(pc)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gather network candidates: %w", ctx.Err())
	}
}

// ErrClosed is returned by a host or viewer that was closed.
var ErrClosed = errors.New("stream closed")
