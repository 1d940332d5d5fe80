// Package tone measures a pure tone in sampled sound: its frequency and
// its level. Sound tests use it to check what a viewer heard against what
// an app played; it knows nothing of where the samples come from.
package tone

import (
	"errors"
	"math"
)

// Measure is what Analyze finds in one channel.
type Measure struct {
	Hz     float64 // the tone's frequency
	DBFS   float64 // RMS level, in dB below a full-scale square wave
	Purity float64 // share of the power at Hz (1: a pure tone)
}

// Analyze measures the tone in channel ch of interleaved 16-bit samples at
// rate samples a second: the frequency from the time between upward zero
// crossings (interpolated), the level from the RMS, and the purity from
// the Goertzel power at that frequency against the whole power.
func Analyze(pcm []int16, channels, ch, rate int) (Measure, error) {
	n := len(pcm) / channels
	if n < rate/20 {
		return Measure{}, errors.New("less than 50 ms of sound")
	}
	x := make([]float64, n)
	var power float64
	for i := range x {
		x[i] = float64(pcm[i*channels+ch]) / 32768
		power += x[i] * x[i]
	}
	power /= float64(n)
	if power == 0 {
		return Measure{DBFS: math.Inf(-1)}, errors.New("digital silence")
	}
	first, last, crossings := -1.0, -1.0, 0
	for i := 1; i < n; i++ {
		if x[i-1] < 0 && x[i] >= 0 {
			at := float64(i-1) + x[i-1]/(x[i-1]-x[i])
			if first < 0 {
				first = at
			} else {
				crossings++
			}
			last = at
		}
	}
	if crossings < 2 {
		return Measure{DBFS: 10 * math.Log10(power)}, errors.New("no periodic tone")
	}
	hz := float64(crossings) * float64(rate) / (last - first)
	// Goertzel over whole periods, so that the window does not leak.
	from, to := int(math.Ceil(first)), int(last)
	w := 2 * math.Pi * hz / float64(rate)
	var s1, s2 float64
	for i := from; i < to; i++ {
		s1, s2 = x[i]+2*math.Cos(w)*s1-s2, s1
	}
	m := float64(to - from)
	tonePower := (s1*s1 + s2*s2 - 2*math.Cos(w)*s1*s2) * 2 / (m * m)
	var windowPower float64
	for i := from; i < to; i++ {
		windowPower += x[i] * x[i]
	}
	windowPower /= m
	return Measure{Hz: hz, DBFS: 10 * math.Log10(power), Purity: tonePower / windowPower}, nil
}

// Windows measures channel ch in consecutive windows of n samples each;
// a window that holds no tone gets a zero Measure. Sound that stutters
// (a loaded machine, a restore) still shows its tone in the windows
// between the gaps.
func Windows(pcm []int16, channels, ch, rate, n int) []Measure {
	var ms []Measure
	for start := 0; start+n*channels <= len(pcm); start += n * channels {
		m, err := Analyze(pcm[start:start+n*channels], channels, ch, rate)
		if err != nil {
			m = Measure{}
		}
		ms = append(ms, m)
	}
	return ms
}
