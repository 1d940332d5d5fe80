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

// UnmarshalBinary decodes an index written by MarshalBinary. It checks only
// the encoding; Validate checks what the index says.
func (ix *Index) UnmarshalBinary(data []byte) error {
	if len(data) < len(indexMagic) || string(data[:len(indexMagic)]) != string(indexMagic) {
		return errors.New("index: not a binary index")
	}
	data = data[len(indexMagic):]
	next := func(limit uint64) (uint64, error) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, errShortIndex
		}
		if v > limit {
			return 0, fmt.Errorf("index: value %d out of range", v)
		}
		data = data[n:]
		return v, nil
	}
	files, err := next(MaxFiles)
	if err != nil {
		return err
	}
	ix.Files = make([]File, 0, files)
	for range files {
		var f File
		nameLen, err := next(uint64(len(data)))
		if err != nil {
			return err
		}
		f.Name, data = string(data[:nameLen]), data[nameLen:]
		size, err := next(MaxFileSize)
		if err != nil {
			return err
		}
		mode, err := next(1<<32 - 1)
		if err != nil {
			return err
		}
		pieces, err := next(uint64(len(data) / hashSize))
		if err != nil {
			return err
		}
		f.Size, f.Mode = int64(size), uint32(mode)
		f.Pieces = make(Hashes, pieces)
		for i := range f.Pieces {
			copy(f.Pieces[i][:], data[i*hashSize:])
		}
		data = data[int(pieces)*hashSize:]
		ix.Files = append(ix.Files, f)
	}
	if len(data) != 0 {
		return fmt.Errorf("index: %d bytes after the end", len(data))
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
// receiver that holds every piece of base can lack.
func (ix *Index) UnmarshalBinaryDiff(data []byte, base *Index) (Places, error) {
	if len(data) < len(diffMagic) || string(data[:len(diffMagic)]) != string(diffMagic) {
		return nil, errors.New("index: not a binary index difference")
	}
	data = data[len(diffMagic):]
	next := func(limit uint64) (uint64, error) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, errShortIndex
		}
		if v > limit {
			return 0, fmt.Errorf("index: value %d out of range", v)
		}
		data = data[n:]
		return v, nil
	}
	before := make(map[string]Hashes, len(base.Files))
	for _, f := range base.Files {
		before[f.Name] = f.Pieces
	}
	files, err := next(MaxFiles)
	if err != nil {
		return nil, err
	}
	ix.Files = make([]File, 0, files)
	var changed Places
	first := 0 // the place of the file's first piece
	for range files {
		var f File
		nameLen, err := next(uint64(len(data)))
		if err != nil {
			return nil, err
		}
		f.Name, data = string(data[:nameLen]), data[nameLen:]
		size, err := next(MaxFileSize)
		if err != nil {
			return nil, err
		}
		mode, err := next(1<<32 - 1)
		if err != nil {
			return nil, err
		}
		pieces, err := next(MaxFileSize / PageSize)
		if err != nil {
			return nil, err
		}
		f.Size, f.Mode = int64(size), uint32(mode)
		f.Pieces = make(Hashes, pieces)
		old := before[f.Name]
		copy(f.Pieces, old)
		n, err := next(pieces)
		if err != nil {
			return nil, err
		}
		if n*uint64(hashSize) > uint64(len(data)) {
			return nil, errShortIndex
		}
		pos, grown := -1, 0
		for range n {
			gap, err := next(pieces)
			if err != nil {
				return nil, err
			}
			pos += int(gap)
			if gap == 0 || pos >= int(pieces) || len(data) < hashSize {
				return nil, fmt.Errorf("index: changed piece %d of %s out of range", pos, f.Name)
			}
			copy(f.Pieces[pos][:], data[:hashSize])
			data = data[hashSize:]
			changed = append(changed, first+pos)
			if pos >= len(old) {
				grown++
			}
		}
		// Every position past the base file's end must be listed: one left
		// unset would stand for a piece no one sent.
		if want := max(int(pieces)-len(old), 0); grown != want {
			return nil, fmt.Errorf("index: %s has %d pieces past its earlier end but %d are listed", f.Name, want, grown)
		}
		ix.Files = append(ix.Files, f)
		first += len(f.Pieces)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("index: %d bytes after the end", len(data))
	}
	return changed, nil
}
