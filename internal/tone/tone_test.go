package tone

import (
	"math"
	"math/rand/v2"
	"testing"
)

func sine(hz, amplitude float64, rate, seconds int, noise float64) []int16 {
	pcm := make([]int16, rate*seconds*2)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < rate*seconds; i++ {
		v := amplitude*math.Sin(2*math.Pi*hz*float64(i)/float64(rate)) + noise*(2*r.Float64()-1)
		pcm[2*i] = int16(v * 32767)
		pcm[2*i+1] = int16(v * 32767)
	}
	return pcm
}

func TestAnalyze(t *testing.T) {
	for _, c := range []struct {
		name           string
		hz, amp, noise float64
		wantDB         float64
		pure           bool
	}{
		{"440 Hz at a quarter", 440, 0.25, 0, -15.05, true},
		{"1 kHz at full scale", 1000, 1, 0, -3.01, true},
		{"100 Hz quiet", 100, 0.01, 0, -43.0, true},
		{"440 Hz in loud noise", 440, 0.1, 0.5, -13.3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Analyze(sine(c.hz, c.amp, 48000, 1, c.noise), 2, 1, 48000)
			if !c.pure {
				// Noise makes crossings meaningless: purity says so.
				if err == nil && m.Purity > 0.5 {
					t.Errorf("purity %.2f of a tone buried in noise, want ≤ 0.5", m.Purity)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(m.Hz-c.hz) > 0.5 || math.Abs(m.DBFS-c.wantDB) > 0.2 || m.Purity < 0.99 {
				t.Errorf("got %+v, want %.1f Hz at %.1f dBFS, purity ≥ 0.99", m, c.hz, c.wantDB)
			}
		})
	}
	if _, err := Analyze(make([]int16, 48000*2), 2, 0, 48000); err == nil {
		t.Error("silence measured as a tone")
	}
}

func TestWindowsThroughGaps(t *testing.T) {
	pcm := sine(440, 0.25, 48000, 1, 0)
	// A gap of silence and a jump of phase in the middle of the second.
	clear(pcm[2*20000 : 2*23000])
	ms := Windows(pcm, 2, 0, 48000, 4800)
	if len(ms) != 10 {
		t.Fatalf("%d windows of 100 ms in 1 s", len(ms))
	}
	good := 0
	for _, m := range ms {
		if math.Abs(m.Hz-440) < 1 && math.Abs(m.DBFS-(-15.05)) < 0.5 && m.Purity > 0.95 {
			good++
		}
	}
	if good < 8 || good == 10 {
		t.Errorf("%d of 10 windows measure the tone, want 8 or 9 (the gap spoils one or two)", good)
	}
}
