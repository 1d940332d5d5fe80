package delta

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// A first round need not wait for its dump to end. CRIU appends the pages of
// a dump to its page images as it goes (218 MB in 110 ms here), far faster
// than a link carries them: SendGrowing sends them as they are written,
// before there is an index, and the receiver writes them in place
// (ReceiveGrowing). The index then only confirms them: Adopt hashes what
// arrived, takes the pieces that match and answers with the rest, which go
// as usual. Nothing streamed is trusted before it matches the index.

// Stream records: the name's length, the name, the offset, the data's
// length, the data. A record with an empty name ends the stream.
const streamChunk = 1 << 20

// SendGrowing sends the page images of dir to w as they grow, in records of
// whole pages, until done is closed; then it sends what remains and ends the
// stream. report, if set, is told the bytes sent and the bytes written so
// far. It returns the bytes of page data sent.
func SendGrowing(ctx context.Context, w io.Writer, dir string, done <-chan struct{}, report func(sent, written int64)) (int64, error) {
	bw := bufio.NewWriterSize(w, streamChunk+64)
	files := map[string]*os.File{}
	defer closeAll(files)
	sentOf := map[string]int64{}
	var sent int64
	buf := make([]byte, streamChunk)
	for {
		finished := false
		select {
		case <-done:
			finished = true
		default:
		}
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return sent, err
		}
		// Sizes first, so that what is reported as written covers what
		// is sent.
		var written int64
		sizes := map[string]int64{}
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || !isPageImage(name) {
				continue
			}
			f := files[name]
			if f == nil {
				if f, err = os.Open(filepath.Join(dir, name)); err != nil {
					return sent, err
				}
				files[name] = f
			}
			info, err := f.Stat()
			if err != nil {
				return sent, err
			}
			sizes[name] = info.Size()
			written += info.Size()
		}
		progressed := false
		for _, e := range ents {
			name := e.Name()
			size, ok := sizes[name]
			if !ok {
				continue
			}
			f := files[name]
			// Only whole pages while CRIU writes; the file is complete once
			// done is closed.
			upTo := size &^ (PageSize - 1)
			if finished {
				upTo = size
			}
			for off := sentOf[name]; off < upTo; {
				if err := ctx.Err(); err != nil {
					return sent, err
				}
				n, err := f.ReadAt(buf[:min(int64(len(buf)), upTo-off)], off)
				if n == 0 {
					if err == nil || errors.Is(err, io.EOF) {
						break
					}
					return sent, err
				}
				if err := writeRecord(bw, name, off, buf[:n]); err != nil {
					return sent, err
				}
				off += int64(n)
				sentOf[name] = off
				sent += int64(n)
				progressed = true
				if report != nil {
					report(sent, written)
				}
			}
		}
		if finished {
			if err := writeRecord(bw, "", 0, nil); err != nil {
				return sent, err
			}
			return sent, bw.Flush()
		}
		if err := bw.Flush(); err != nil {
			return sent, err
		}
		if !progressed {
			select {
			case <-done:
			case <-ctx.Done():
				return sent, ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
}

func writeRecord(w io.Writer, name string, off int64, data []byte) error {
	hdr := make([]byte, 2+len(name)+8+4)
	binary.BigEndian.PutUint16(hdr, uint16(len(name)))
	copy(hdr[2:], name)
	binary.BigEndian.PutUint64(hdr[2+len(name):], uint64(off))
	binary.BigEndian.PutUint32(hdr[2+len(name)+8:], uint32(len(data)))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// Streamed is what ReceiveGrowing wrote: the hash of every whole page, by
// file and page number, taken as it arrived so that Adopt need not read it
// again (an 800 MB image took 160-200 ms to hash).
type Streamed struct {
	dir   string
	pages map[string]map[int64]Hash
	bytes int64
}

// Bytes is how many bytes of pages arrived.
func (st *Streamed) Bytes() int64 { return st.bytes }

// ReceiveGrowing writes the page images SendGrowing sends into dst, at most
// limit bytes of them in all. Names must be page images directly in dst,
// each file arrives in order, without holes, and no file may grow past
// MaxFileSize.
func ReceiveGrowing(r io.Reader, dst string, limit int64) (*Streamed, error) {
	st := &Streamed{dir: dst, pages: map[string]map[int64]Hash{}}
	got, err := st.receive(r, limit)
	st.bytes = got
	return st, err
}

func (st *Streamed) receive(r io.Reader, limit int64) (int64, error) {
	dst := st.dir
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(r, streamChunk+64)
	files := map[string]*os.File{}
	defer closeAll(files)
	// Where each file ends so far. SendGrowing sends each file in order,
	// so a record must start there: one further on would leave a hole,
	// and a few bytes at a far offset would make a file of many GiB that
	// Adopt then reads in full.
	ends := map[string]int64{}
	buf := make([]byte, streamChunk)
	var got int64
	for {
		var n [2]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			return got, fmt.Errorf("read stream record: %w", err)
		}
		name := make([]byte, binary.BigEndian.Uint16(n[:]))
		var pos [12]byte
		if _, err := io.ReadFull(br, name); err != nil {
			return got, fmt.Errorf("read stream record: %w", err)
		}
		if _, err := io.ReadFull(br, pos[:]); err != nil {
			return got, fmt.Errorf("read stream record: %w", err)
		}
		if len(name) == 0 {
			return got, nil
		}
		off, size := int64(binary.BigEndian.Uint64(pos[:8])), int64(binary.BigEndian.Uint32(pos[8:]))
		file := string(name)
		switch {
		case file != filepath.Base(file) || !isPageImage(file):
			return got, fmt.Errorf("stream names %q, not a page image", file)
		case size > streamChunk || off < 0 || off > MaxFileSize-size:
			return got, fmt.Errorf("stream record for %s out of range (%d bytes at %d)", file, size, off)
		case off != ends[file]:
			return got, fmt.Errorf("stream record for %s at %d, not where the file ends (%d)", file, off, ends[file])
		case got+size > limit:
			return got, fmt.Errorf("stream is larger than the %d bytes announced", limit)
		}
		f := files[file]
		if f == nil {
			if len(files) >= MaxFiles {
				return got, fmt.Errorf("stream names more than %d files", MaxFiles)
			}
			path, err := securejoin.SecureJoin(dst, file)
			if err != nil {
				return got, err
			}
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
				return got, err
			}
			files[file] = f
		}
		if _, err := io.ReadFull(br, buf[:size]); err != nil {
			return got, fmt.Errorf("read %s: %w", file, err)
		}
		if _, err := f.WriteAt(buf[:size], off); err != nil {
			return got, err
		}
		got += size
		ends[file] = off + size
		hashes := st.pages[file]
		if hashes == nil {
			hashes = map[int64]Hash{}
			st.pages[file] = hashes
		}
		// Records start on a page; a page cut short hashes at Adopt.
		for at := int64(0); at+PageSize <= size && off%PageSize == 0; at += PageSize {
			hashes[(off+at)/PageSize] = sum(buf[at : at+PageSize])
		}
	}
}

// Adopt takes what dst already holds of image ix (e.g. from ReceiveGrowing,
// whose hashes st then spares reading it again; st may be nil) into the
// pool: every piece found at its place in dst. Files of dst that ix lacks
// are removed and the others cut to their size. It returns the places of
// the pieces still missing, for ReceiveImage into dst.
func (p *Pool) Adopt(dst string, ix *Index, st *Streamed) (Places, error) {
	if st != nil && st.dir != dst {
		return nil, fmt.Errorf("adopt %s: the stream went to %s", dst, st.dir)
	}
	if err := ix.Validate(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dst)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	known := map[string]bool{}
	for _, f := range ix.Files {
		known[f.Name] = true
	}
	for _, e := range ents {
		if !known[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	d := -1
	for _, f := range ix.Files {
		path, err := securejoin.SecureJoin(dst, f.Name)
		if err != nil {
			return nil, err
		}
		info, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("adopt %s: not a regular file", f.Name)
		}
		if info.Size() > f.Size {
			if err := os.Truncate(path, f.Size); err != nil {
				return nil, err
			}
		}
		have := File{Name: f.Name, Size: min(info.Size(), f.Size)}
		ps := f.pieceSize()
		hashed := st != nil && st.pages[f.Name] != nil && ps == PageSize
		if hashed {
			if err := st.piecesOf(path, &have); err != nil {
				return nil, fmt.Errorf("adopt %s: %w", f.Name, err)
			}
		} else if err := hashFile(path, &have); err != nil {
			return nil, fmt.Errorf("adopt %s: %w", f.Name, err)
		}
		for i, h := range have.Pieces {
			if h != f.Pieces[i] {
				continue // torn, or the end of a short file
			}
			if _, ok := p.where[h]; ok {
				continue
			}
			if d < 0 {
				p.dirs = append(p.dirs, dst)
				d = len(p.dirs) - 1
			}
			off := int64(i) * ps
			p.where[h] = location{dir: d, file: f.Name, off: off, size: min(ps, f.Size-off)}
		}
	}
	return p.Missing(ix), nil
}

// piecesOf fills f.Pieces (f is path as it is now) from the hashes taken
// as the pages arrived; a page that did not arrive whole, or that was cut
// to the index's size, is read.
func (st *Streamed) piecesOf(path string, f *File) error {
	streamed := st.pages[f.Name]
	f.Pieces = make(Hashes, (f.Size+PageSize-1)/PageSize)
	var file *os.File
	defer func() {
		if file != nil {
			file.Close()
		}
	}()
	buf := make([]byte, PageSize)
	for i := range f.Pieces {
		off := int64(i) * PageSize
		if h, ok := streamed[int64(i)]; ok && off+PageSize <= f.Size {
			f.Pieces[i] = h
			continue
		}
		if file == nil {
			var err error
			if file, err = os.Open(path); err != nil {
				return err
			}
		}
		n := min(PageSize, f.Size-off)
		if _, err := file.ReadAt(buf[:n], off); err != nil {
			return err
		}
		f.Pieces[i] = sum(buf[:n])
	}
	return nil
}
