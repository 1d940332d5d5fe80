package ui

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
)

// phaseText says what a handoff is doing, in the words the overlay and the
// tiles show.
func phaseText(h Handoff) string {
	peer := h.Peer
	if peer == "" {
		peer = "the other device"
	}
	switch h.Phase {
	case migration.PhaseRequest:
		return "Asking " + peer + "…"
	case migration.PhaseHandles:
		return "Checking files…"
	case migration.PhasePreCopy:
		if h.Round > 1 {
			return "Copying what changed meanwhile" + bytesSuffix(h) + "…"
		}
		return "Copying memory" + bytesSuffix(h) + "…"
	case migration.PhaseFreeze:
		return "Pausing the app…"
	case migration.PhaseFinal:
		return "Sending the last changes" + bytesSuffix(h) + "…"
	case migration.PhaseRestore:
		return "Starting on " + peer + "…"
	case migration.PhaseDone:
		return "Running on " + peer
	case migration.PhaseRollback:
		return "Going back: the app keeps running here"
	}
	return h.Phase + "…"
}

// shortPhase is a handoff's phase in one word, for small places.
func shortPhase(h Handoff) string {
	switch h.Phase {
	case migration.PhaseRequest:
		return "Asking"
	case migration.PhaseHandles:
		return "Checking"
	case migration.PhasePreCopy:
		return "Copying"
	case migration.PhaseFreeze:
		return "Pausing"
	case migration.PhaseFinal:
		return "Finishing"
	case migration.PhaseRestore:
		return "Starting"
	}
	return "Moving"
}

func bytesSuffix(h Handoff) string {
	if h.Total <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%s of %s)", humanBytes(min(h.Bytes, h.Total)), humanBytes(h.Total))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// appStatus is the short line under an app's name.
func appStatus(a AppItem, s State) string {
	if h, ok := s.Handoffs[a.Name]; ok {
		if h.Direction == "in" {
			return "arriving from " + h.Peer
		}
		return fmt.Sprintf("moving to %s — %d%%", h.Peer, int(h.Fraction()*100))
	}
	if a.Remote {
		return "on " + a.Peer
	}
	switch a.State {
	case engine.StateRunning:
		return "running here"
	case engine.StateSuspended:
		return "suspended"
	case engine.StateExited:
		return "ended by itself"
	case engine.StateFrozen:
		return "paused for a handoff"
	}
	return string(a.State)
}

// sendPrefix matches the wrapping the daemon puts around a failed send:
// `send "notes" to ws-b: `.
var sendPrefix = regexp.MustCompile(`^(send|ask [^:]+ to send) "?[^"]*"? (to|back) ?[^:]*: `)

// plainReason turns an error from the daemon into a sentence for a person.
// The daemon's messages are written for people already; this removes the
// operation prefixes a notification repeats anyway, explains the few that
// are technical, and makes it a sentence.
func plainReason(msg, peer string) string {
	msg = strings.TrimSpace(msg)
	for {
		m := sendPrefix.FindString(msg)
		if m == "" {
			break
		}
		msg = msg[len(m):]
	}
	if peer == "" {
		peer = "the other device"
	}
	low := strings.ToLower(msg)
	switch {
	case msg == "":
		msg = "no reason was given"
	case strings.Contains(low, "cannot reach the handoff daemon"):
		msg = "the Handoff daemon on this device is not running"
	case strings.Contains(low, "connection refused"), strings.Contains(low, "no route to host"),
		strings.Contains(low, "network is unreachable"):
		msg = "could not reach " + peer + ": is its Handoff daemon running?"
	case strings.Contains(low, "deadline exceeded"), strings.Contains(low, "timeout"), strings.Contains(low, "timed out"):
		msg = peer + " did not answer in time"
	case strings.Contains(low, "connection reset"), strings.Contains(low, "broken pipe"), strings.Contains(low, "eof"):
		msg = "the connection to " + peer + " was lost"
	case strings.Contains(low, "no space left on device"):
		msg = "there is not enough disk space"
	}
	msg = strings.TrimRight(msg, ". ")
	if !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, "!") {
		msg += "."
	}
	if strings.HasPrefix(msg, peer) {
		return msg // a device's name is written as its user wrote it
	}
	r, size := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + msg[size:]
}
