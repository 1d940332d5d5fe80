package handles

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteTable writes m for people, as `handoff handles NAME` shows it: one
// row per handle, grouped by class with the blockers first, each blocker
// followed by its reason and remedy, and a summary line at the end.
func WriteTable(w io.Writer, m *Manifest) error {
	hs := slices.Clone(m.Handles)
	for i := range hs {
		hs[i].Users = slices.Clone(hs[i].Users)
		sortUsers(hs[i].Users)
	}
	sortForDisplay(hs)
	s := m.Summary
	header := []string{"PID", "COMM", "FD", "KIND", "CLASS", "PATH/PEER", "SIZE"}
	rows := make([][]string, len(hs))
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for i, h := range hs {
		rows[i] = tableRow(h)
		for c, cell := range rows[i] {
			widths[c] = max(widths[c], utf8.RuneCountInString(cell))
		}
	}
	ew := &errWriter{w: w}
	line := func(cells []string) {
		var b strings.Builder
		for c, cell := range cells {
			if c == len(cells)-1 {
				b.WriteString(cell)
				break
			}
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[c]-utf8.RuneCountInString(cell)+2))
		}
		ew.printf("%s\n", strings.TrimRight(b.String(), " "))
	}
	indent := strings.Repeat(" ", widths[0]+2)
	var cur Class
	for i, h := range hs {
		if i == 0 || h.Class != cur {
			cur = h.Class
			if i > 0 {
				ew.printf("\n")
			}
			ew.printf("%s\n", groupTitle(cur, s))
			line(header)
		}
		line(rows[i])
		if h.Class == Blocks {
			ew.printf("%swhy: %s\n", indent, h.Reason)
			ew.printf("%sfix: %s\n", indent, h.Remedy)
		}
	}
	if len(hs) > 0 {
		ew.printf("\n")
	}
	ew.printf("%d processes, %d handles: %d block, %d must be present (%s), %d move; anonymous memory %s\n",
		len(m.Processes), len(m.Handles), s.Blocks, s.Present, humanBytes(s.PresentBytes), s.Moves, humanBytes(s.AnonBytes))
	if s.Blocks == 0 {
		ew.printf("nothing blocks the move\n")
	}
	return ew.err
}

func groupTitle(c Class, s Summary) string {
	switch c {
	case Blocks:
		return fmt.Sprintf("BLOCKS THE MOVE (%d)", s.Blocks)
	case Present:
		return fmt.Sprintf("MUST BE PRESENT ON THE DESTINATION (%d, %s)", s.Present, humanBytes(s.PresentBytes))
	case Moves:
		return fmt.Sprintf("MOVES WITH THE APP (%d)", s.Moves)
	}
	return strings.ToUpper(string(c))
}

func tableRow(h Handle) []string {
	pid, comm, fds := "-", "-", "-"
	if len(h.Users) > 0 {
		u := h.Users[0]
		pid, comm = strconv.Itoa(u.PID), u.Comm
		var list []string
		pids := map[int]bool{}
		for _, v := range h.Users {
			pids[v.PID] = true
			if v.PID != u.PID {
				continue
			}
			if v.FD < 0 {
				list = append(list, "mem")
			} else {
				list = append(list, strconv.Itoa(v.FD))
			}
		}
		fds = strings.Join(list, ",")
		if n := len(pids) - 1; n > 0 {
			pid += fmt.Sprintf(" +%d", n)
		}
	}
	size := "-"
	if h.Size > 0 {
		size = humanBytes(h.Size)
	}
	return []string{pid, comm, fds, string(h.Kind), string(h.Class), pathPeer(h), size}
}

func pathPeer(h Handle) string {
	s := h.Path
	if h.Device != "" {
		s += " (" + h.Device + ")"
	}
	if p := h.Peer; p != nil {
		var parts []string
		if p.Address != "" {
			parts = append(parts, p.Address)
		}
		if p.PID != 0 {
			parts = append(parts, fmt.Sprintf("%s (pid %d)", p.Comm, p.PID))
		}
		where := "inside"
		if !p.Inside {
			where = "outside"
		}
		parts = append(parts, where)
		s += " → " + strings.Join(parts, " ")
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), "KMGTPE"
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, suffix[i])
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
