package discovery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ProtocolVersion is announced in TXT and checked by peers.
const ProtocolVersion = 1

// Announcement is what a device says about itself in its TXT records.
type Announcement struct {
	ID      DeviceID
	Version int
	Name    string
	Arch    string
	Criu    string
}

// TXT limits: a record is at most 255 bytes by DNS; we accept few of them.
const (
	maxTXTRecords = 16
	maxTXTLen     = 255
	maxNameLen    = 63
)

// TXT encodes the announcement as TXT records.
func (a Announcement) TXT() []string {
	return []string{
		"id=" + a.ID.String(),
		"v=" + strconv.Itoa(a.Version),
		"name=" + a.Name,
		"arch=" + a.Arch,
		"criu=" + a.Criu,
	}
}

// ErrBadTXT is returned for TXT records that do not describe a Handoff device.
var ErrBadTXT = errors.New("malformed Handoff TXT records")

// ParseTXT reads TXT records from the network. It never trusts their size or
// content: unknown keys are ignored, names are cleaned, the ID must parse.
func ParseTXT(records []string) (Announcement, error) {
	var a Announcement
	if len(records) > maxTXTRecords {
		return a, fmt.Errorf("%w: %d records", ErrBadTXT, len(records))
	}
	var haveID, haveV bool
	for _, r := range records {
		if len(r) > maxTXTLen {
			return a, fmt.Errorf("%w: a record of %d bytes", ErrBadTXT, len(r))
		}
		k, v, ok := strings.Cut(r, "=")
		if !ok {
			continue
		}
		switch k {
		case "id":
			id, err := ParseDeviceID(v)
			if err != nil {
				return a, fmt.Errorf("%w: %v", ErrBadTXT, err)
			}
			a.ID, haveID = id, true
		case "v":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return a, fmt.Errorf("%w: version %q", ErrBadTXT, v)
			}
			a.Version, haveV = n, true
		case "name":
			a.Name = cleanName(v)
		case "arch":
			a.Arch = cleanName(v)
		case "criu":
			a.Criu = cleanName(v)
		}
	}
	if !haveID || !haveV {
		return a, fmt.Errorf("%w: no id or version", ErrBadTXT)
	}
	return a, nil
}

// cleanName keeps printable characters of a name from the network.
func cleanName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) && r != unicode.ReplacementChar {
			b.WriteRune(r)
		}
		if b.Len() >= maxNameLen {
			break
		}
	}
	return strings.TrimSpace(b.String())
}
