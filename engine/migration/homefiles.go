package migration

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/zeebo/xxh3"

	"github.com/handoff/handoff/engine"
)

// stageHomeFiles unpacks the user's files a source sent (a tar stream of
// regular files) into dir. Every entry must be a file the destination
// asked for (need), of the listed size and hash; nothing else is written,
// and every write stays in dir.
func stageHomeFiles(r io.Reader, dir string, listed []engine.HomeFile, need map[string]bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	byPath := map[string]engine.HomeFile{}
	for _, f := range listed {
		byPath[f.Path] = f
	}
	got := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		f, ok := byPath[hdr.Name]
		if !ok || !need[hdr.Name] || got[hdr.Name] {
			return fmt.Errorf("%q was not asked for", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size != f.Size || sparse(hdr) {
			return fmt.Errorf("%s is not the listed regular file of %d bytes", hdr.Name, f.Size)
		}
		if err := root.MkdirAll(filepath.Dir(hdr.Name), 0o700); err != nil {
			return err
		}
		out, err := root.OpenFile(hdr.Name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		h := xxh3.New()
		_, err = io.CopyN(io.MultiWriter(out, h), tr, hdr.Size)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		sum := h.Sum128().Bytes()
		if hex.EncodeToString(sum[:]) != f.Hash {
			return fmt.Errorf("%s arrived damaged (its hash differs)", hdr.Name)
		}
		got[hdr.Name] = true
	}
	for p := range need {
		if !got[p] {
			return fmt.Errorf("%s was asked for and did not come", p)
		}
	}
	return nil
}

func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
