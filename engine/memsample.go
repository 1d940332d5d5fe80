package engine

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"
)

// Without the kernel's dirty-page tracking only a full dump tells which of
// an app's pages changed, and a dump holds the app still (about a second at
// 800 MB). A sample of its pages, read while it runs, estimates how much
// changed instead: unbiased, and at 4096 pages within a few percent of the
// sampled memory.

// MemorySample is a random sample of an app's writable memory, page by
// page, to estimate later how much of it changed.
type MemorySample struct {
	pages []sampledPage
	bytes int64 // writable memory the sample was drawn from
}

type sampledPage struct {
	pid  int
	addr uintptr
	sum  uint64
	ok   bool // it could be read
}

const pageSize = 4096

// SampleMemory draws n pages at random from the writable memory of the
// app's processes (the memory a dump saves) and reads them, without
// stopping the app.
func (e *Engine) SampleMemory(ctx context.Context, name string, n int) (*MemorySample, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if ctr == nil {
		return nil, &StateError{App: name, Op: "sample the memory of", State: a.info().State}
	}
	pids, err := ctr.Processes()
	if err != nil {
		return nil, fmt.Errorf("sample the memory of %q: %w", name, err)
	}
	var regions []memRegion
	var total int64
	for _, pid := range pids {
		rs, err := writableRegions(pid)
		if err != nil {
			continue // the process ended
		}
		for _, r := range rs {
			total += r.size()
		}
		regions = append(regions, rs...)
	}
	s := &MemorySample{bytes: total}
	if total == 0 {
		return s, nil
	}
	for range n {
		at := rand.Int64N(total/pageSize) * pageSize
		for _, r := range regions {
			if at < r.size() {
				s.pages = append(s.pages, sampledPage{pid: r.pid, addr: r.start + uintptr(at)})
				break
			}
			at -= r.size()
		}
	}
	// Read a process's pages together, in address order.
	slices.SortFunc(s.pages, func(a, b sampledPage) int {
		if a.pid != b.pid {
			return a.pid - b.pid
		}
		return int(int64(a.addr>>12) - int64(b.addr>>12))
	})
	s.read(ctx, func(p *sampledPage, sum uint64, ok bool) { p.sum, p.ok = sum, ok })
	return s, nil
}

// Changed estimates how many bytes of the sampled memory changed since the
// sample was drawn: the share of its pages that changed, times the memory
// it was drawn from. Pages that could not be read either time are left out.
func (s *MemorySample) Changed(ctx context.Context) int64 {
	var read, changed int
	s.read(ctx, func(p *sampledPage, sum uint64, ok bool) {
		if !p.ok || !ok {
			return
		}
		read++
		if sum != p.sum {
			changed++
		}
	})
	if read == 0 {
		return 0
	}
	return int64(float64(changed) / float64(read) * float64(s.bytes))
}

// Bytes is how much writable memory the sample was drawn from.
func (s *MemorySample) Bytes() int64 { return s.bytes }

// read reads every sampled page with process_vm_readv, a batch of pages of
// one process at a time, and hands each page's hash to found.
func (s *MemorySample) read(ctx context.Context, found func(p *sampledPage, sum uint64, ok bool)) {
	const batch = 256 // pages per call (IOV_MAX is 1024)
	buf := make([]byte, batch*pageSize)
	for i := 0; i < len(s.pages); {
		if ctx.Err() != nil {
			return
		}
		j := i + 1
		for j < len(s.pages) && j-i < batch && s.pages[j].pid == s.pages[i].pid {
			j++
		}
		local := []unix.Iovec{{Base: &buf[0], Len: uint64((j - i) * pageSize)}}
		remote := make([]unix.RemoteIovec, 0, j-i)
		for _, p := range s.pages[i:j] {
			remote = append(remote, unix.RemoteIovec{Base: p.addr, Len: pageSize})
		}
		n, _ := unix.ProcessVMReadv(s.pages[i].pid, local, remote, 0)
		// A partial read stops at the first page it could not read; the
		// pages after it are read one by one.
		done := max(n, 0) / pageSize
		for k := range j - i {
			p := &s.pages[i+k]
			page := buf[k*pageSize : (k+1)*pageSize]
			if k >= done {
				one := []unix.Iovec{{Base: &page[0], Len: pageSize}}
				if m, err := unix.ProcessVMReadv(p.pid, one, remote[k:k+1], 0); err != nil || m != pageSize {
					found(p, 0, false)
					continue
				}
			}
			found(p, xxh3.Hash(page), true)
		}
		i = j
	}
}

// memRegion is a writable mapping of one process.
type memRegion struct {
	pid        int
	start, end uintptr
}

func (r memRegion) size() int64 { return int64(r.end - r.start) }

// writableRegions lists the mappings of pid a dump saves pages of: the
// writable ones, but not shared mappings of files (their pages are the
// file's) nor the kernel's [vvar]/[vdso].
func writableRegions(pid int) ([]memRegion, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []memRegion
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 7f..-7f.. rw-p 00000000 00:00 0    [heap]
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || len(fields[1]) < 4 || fields[1][1] != 'w' {
			continue
		}
		path := ""
		if len(fields) >= 6 {
			path = fields[5]
		}
		shared := fields[1][3] == 's'
		if shared && strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "/dev/zero") && !strings.HasPrefix(path, "/SYSV") {
			continue
		}
		if path == "[vvar]" || path == "[vdso]" || path == "[vsyscall]" {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, memRegion{pid: pid, start: uintptr(start), end: uintptr(end)})
	}
	return out, sc.Err()
}
