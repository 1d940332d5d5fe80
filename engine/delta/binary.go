package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An index travels in a compact binary form: the final index is sent while
// the app is frozen, and encoding/json spent ~45 ms scanning the megabyte of
// base64 a 200 MB image's index takes, against ~1 ms for this.
//
//	"HIX1", uvarint files, then per file: uvarint name length, name,
//	uvarint size, uvarint mode, uvarint pieces, 16 bytes per piece.
var indexMagic = []byte("HIX1")

// MarshalBinary encodes the index.
func (ix *Index) MarshalBinary() ([]byte, error) {
	n := len(indexMagic) + binary.MaxVarintLen64
	for _, f := range ix.Files {
		n += len(f.Name) + 4*binary.MaxVarintLen64 + len(f.Pieces)*hashSize
	}
	out := make([]byte, 0, n)
	out = append(out, indexMagic...)
	out = binary.AppendUvarint(out, uint64(len(ix.Files)))
	for _, f := range ix.Files {
		out = binary.AppendUvarint(out, uint64(len(f.Name)))
		out = append(out, f.Name...)
		out = binary.AppendUvarint(out, uint64(f.Size))
		out = binary.AppendUvarint(out, uint64(f.Mode))
		out = binary.AppendUvarint(out, uint64(len(f.Pieces)))
		for _, h := range f.Pieces {
			out = append(out, h[:]...)
		}
	}
	return out, nil
}

var errShortIndex = errors.New("index: truncated")

// decoder reads the binary forms of an index. Every count is checked
// against the bytes left before anything of that size is allocated: a
// peer's few bytes must not make this side allocate much.
type decoder struct{ data []byte }

// uvarint reads a value of at most limit.
func (d *decoder) uvarint(limit uint64) (uint64, error) {
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		return 0, errShortIndex
	}
	if v > limit {
		return 0, fmt.Errorf("index: value %d out of range", v)
	}
	d.data = d.data[n:]
	return v, nil
}

// take returns the next n bytes.
func (d *decoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.data)) {
		return nil, errShortIndex
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b, nil
}

// file reads what both forms say of a file before its pieces: name, size,
// mode and how many pieces it has.
func (d *decoder) file() (File, uint64, error) {
	var f File
	nameLen, err := d.uvarint(maxNameLen)
	if err != nil {
		return f, 0, err
	}
	name, err := d.take(nameLen)
	if err != nil {
		return f, 0, err
	}
	f.Name = string(name)
	size, err := d.uvarint(MaxFileSize)
	if err != nil {
		return f, 0, err
	}
	mode, err := d.uvarint(1<<32 - 1)
	if err != nil {
		return f, 0, err
	}
	f.Size, f.Mode = int64(size), uint32(mode)
	// Whether they are as many as the size takes is Validate's to say;
	// the callers bound them by the bytes left before allocating.
	pieces, err := d.uvarint(MaxFileSize / PageSize)
	if err != nil {
		return f, 0, err
	}
	return f, pieces, nil
}

// maxNameLen bounds a file name (Linux's NAME_MAX).
const maxNameLen = 255

// minFileBytes is the fewest bytes a file takes in either form: a name
// length, a name of one byte, size, mode and piece count.
const minFileBytes = 5

// UnmarshalBinary decodes an index written by MarshalBinary. It checks only
// the encoding; Validate checks what the index says.
func (ix *Index) UnmarshalBinary(data []byte) error {
	if len(data) < len(indexMagic) || string(data[:len(indexMagic)]) != string(indexMagic) {
		return errors.New("index: not a binary index")
	}
	d := &decoder{data: data[len(indexMagic):]}
	files, err := d.uvarint(MaxFiles)
	if err != nil {
		return err
	}
	ix.Files = make([]File, 0, min(files, uint64(len(d.data)/minFileBytes)))
	for range files {
		f, pieces, err := d.file()
		if err != nil {
			return err
		}
		// Checked before the hashes are allocated.
		raw, err := d.take(pieces * uint64(hashSize))
		if err != nil {
			return err
		}
		f.Pieces = make(Hashes, pieces)
		for i := range f.Pieces {
			copy(f.Pieces[i][:], raw[i*hashSize:])
		}
		ix.Files = append(ix.Files, f)
	}
	if len(d.data) != 0 {
		return fmt.Errorf("index: %d bytes after the end", len(d.data))
	}
	return nil
}

// A later round's index travels as its difference from the round before,
// which the receiver holds: most pages of an image do not change between
// rounds, and the full index of an 800 MB image (3.2 MB) took the receiver
// ~110 ms to read and look up while the app was frozen.
//
//	"HIXD", uvarint files, then per file: uvarint name length, name,
//	uvarint size, uvarint mode, uvarint pieces, uvarint changed pieces, and
//	per changed piece: uvarint gap from the previous changed piece's
//	position (+1), 16 bytes.
//
// A piece is changed where the base file, found by name, has another hash
// at that position or no piece there.
var diffMagic = []byte("HIXD")

// MarshalBinaryDiff encodes ix as its difference from base.
func (ix *Index) MarshalBinaryDiff(base *Index) []byte {
	before := make(map[string]Hashes, len(base.Files))
	for _, f := range base.Files {
		before[f.Name] = f.Pieces
	}
	out := append([]byte(nil), diffMagic...)
	out = binary.AppendUvarint(out, uint64(len(ix.Files)))
	var changed []int
	for _, f := range ix.Files {
		out = binary.AppendUvarint(out, uint64(len(f.Name)))
		out = append(out, f.Name...)
		out = binary.AppendUvarint(out, uint64(f.Size))
		out = binary.AppendUvarint(out, uint64(f.Mode))
		out = binary.AppendUvarint(out, uint64(len(f.Pieces)))
		old := before[f.Name]
		changed = changed[:0]
		for i, h := range f.Pieces {
			if i >= len(old) || old[i] != h {
				changed = append(changed, i)
			}
		}
		out = binary.AppendUvarint(out, uint64(len(changed)))
		prev := -1
		for _, i := range changed {
			out = binary.AppendUvarint(out, uint64(i-prev))
			out = append(out, f.Pieces[i][:]...)
			prev = i
		}
	}
	return out
}

// UnmarshalBinaryDiff rebuilds an index from its difference from base and
// returns, beside it, the places of the changed pieces: the only ones a
// receiver that holds every piece of base can lack. A file's pieces are
// allocated only once the bytes that must list its new ones are known to
// be there, and a name may come only once: what it allocates is bounded by
// base and the size of data.
func (ix *Index) UnmarshalBinaryDiff(data []byte, base *Index) (Places, error) {
	if len(data) < len(diffMagic) || string(data[:len(diffMagic)]) != string(diffMagic) {
		return nil, errors.New("index: not a binary index difference")
	}
	d := &decoder{data: data[len(diffMagic):]}
	before := make(map[string]Hashes, len(base.Files))
	for _, f := range base.Files {
		before[f.Name] = f.Pieces
	}
	files, err := d.uvarint(MaxFiles)
	if err != nil {
		return nil, err
	}
	ix.Files = make([]File, 0, min(files, uint64(len(d.data)/minFileBytes)))
	seen := make(map[string]bool, cap(ix.Files))
	var changed Places
	first := 0 // the place of the file's first piece
	for range files {
		f, pieces, err := d.file()
		if err != nil {
			return nil, err
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("index: %q comes twice", f.Name)
		}
		seen[f.Name] = true
		n, err := d.uvarint(pieces)
		if err != nil {
			return nil, err
		}
		// Each changed piece takes a gap and a hash.
		if n*uint64(1+hashSize) > uint64(len(d.data)) {
			return nil, errShortIndex
		}
		old := before[f.Name]
		// Every position past the base file's end must be listed: one left
		// unset would stand for a piece no one sent.
		grows := pieces - min(pieces, uint64(len(old)))
		if grows > n {
			return nil, fmt.Errorf("index: %s has %d pieces past its earlier end but %d are listed", f.Name, grows, n)
		}
		f.Pieces = make(Hashes, pieces)
		copy(f.Pieces, old)
		pos, grown := -1, uint64(0)
		for range n {
			gap, err := d.uvarint(pieces)
			if err != nil {
				return nil, err
			}
			pos += int(gap)
			if gap == 0 || pos >= int(pieces) {
				return nil, fmt.Errorf("index: changed piece %d of %s out of range", pos, f.Name)
			}
			h, err := d.take(uint64(hashSize))
			if err != nil {
				return nil, err
			}
			copy(f.Pieces[pos][:], h)
			changed = append(changed, first+pos)
			if pos >= len(old) {
				grown++
			}
		}
		if grown != grows {
			return nil, fmt.Errorf("index: %s has %d pieces past its earlier end but %d are listed", f.Name, grows, grown)
		}
		ix.Files = append(ix.Files, f)
		first += len(f.Pieces)
	}
	if len(d.data) != 0 {
		return nil, fmt.Errorf("index: %d bytes after the end", len(d.data))
	}
	return changed, nil
}
