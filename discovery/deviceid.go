package discovery

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// DeviceID names a device: the SHA-256 of its certificate's DER bytes. Its
// text form, like Syncthing's, is base32 in groups with a check character
// per 13 characters, so a mistyped ID is caught rather than trusted.
type DeviceID [sha256.Size]byte

// IDFromCert returns the device ID of a DER certificate.
func IDFromCert(der []byte) DeviceID { return sha256.Sum256(der) }

const luhnAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// String formats the ID as 8 groups of 7 characters.
func (id DeviceID) String() string {
	plain := strings.TrimRight(base32.StdEncoding.EncodeToString(id[:]), "=") // 52 chars
	var b strings.Builder
	for i := 0; i < 4; i++ {
		group := plain[i*13 : (i+1)*13]
		b.WriteString(group)
		b.WriteByte(luhn32(group))
	}
	s := b.String() // 56 chars
	var out strings.Builder
	for i := 0; i < 56; i += 7 {
		if i > 0 {
			out.WriteByte('-')
		}
		out.WriteString(s[i : i+7])
	}
	return out.String()
}

// Short is the first group, for display next to a name.
func (id DeviceID) Short() string { return id.String()[:7] }

// IsZero reports whether the ID is unset.
func (id DeviceID) IsZero() bool { return id == DeviceID{} }

// MarshalText implements encoding.TextMarshaler.
func (id DeviceID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *DeviceID) UnmarshalText(b []byte) error {
	parsed, err := ParseDeviceID(string(b))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// ErrBadDeviceID is returned for text that is not a device ID.
var ErrBadDeviceID = errors.New("not a device ID")

// ParseDeviceID reads a device ID, forgiving case, dashes, spaces and the
// look-alikes 0/O, 1/I and 8/B, and checking the check characters.
func ParseDeviceID(s string) (DeviceID, error) {
	var id DeviceID
	r := strings.NewReplacer("-", "", " ", "", "0", "O", "1", "I", "8", "B")
	s = r.Replace(strings.ToUpper(strings.TrimSpace(s)))
	if len(s) != 56 {
		return id, fmt.Errorf("%w: %d characters, want 56", ErrBadDeviceID, len(s))
	}
	var plain strings.Builder
	for i := 0; i < 4; i++ {
		group, check := s[i*14:i*14+13], s[i*14+13]
		if luhn32(group) != check {
			return id, fmt.Errorf("%w: check character of group %d is wrong (typo?)", ErrBadDeviceID, i+1)
		}
		plain.WriteString(group)
	}
	raw, err := base32.StdEncoding.DecodeString(plain.String() + "====")
	if err != nil || len(raw) != len(id) {
		return id, fmt.Errorf("%w: %v", ErrBadDeviceID, err)
	}
	copy(id[:], raw)
	return id, nil
}

// luhn32 is the Luhn mod-N check character over the base32 alphabet.
func luhn32(s string) byte {
	factor, sum, n := 1, 0, len(luhnAlphabet)
	for i := 0; i < len(s); i++ {
		cp := strings.IndexByte(luhnAlphabet, s[i])
		if cp < 0 {
			return 0
		}
		addend := factor * cp
		if factor == 2 {
			factor = 1
		} else {
			factor = 2
		}
		addend = addend/n + addend%n
		sum += addend
	}
	return luhnAlphabet[(n-sum%n)%n]
}
