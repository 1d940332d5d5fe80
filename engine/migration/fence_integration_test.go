//go:build integration

package migration

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
)

// TestStaleCommitIsRefused: once the destination said a handoff ended
// without the app (the source called it off, or asked how it ended and
// heard "aborted"), a commit for it is refused — also by a restarted
// daemon, which keeps the fence in its journal. Without that, a commit
// that arrived late could restore an app the source already thawed.
func TestStaleCommitIsRefused(t *testing.T) {
	b := newSide(t)
	journal, err := OpenJournal(filepath.Join(b.work, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	rv := &Receiver{Engine: b.eng, WorkDir: b.work, Journal: journal}
	peer := newRawPeer(t, rv)
	outcome := func(p rawPeer, id string) string {
		t.Helper()
		status, _, data := p.do(http.MethodGet, "/"+id+"/outcome", nil)
		var o Outcome
		if status != http.StatusOK || json.Unmarshal(data, &o) != nil {
			t.Fatalf("outcome of %s: %d %s", id, status, data)
		}
		return o.State
	}
	commitRefused := func(p rawPeer, id string) {
		t.Helper()
		status, r, _ := p.do(http.MethodPost, "/"+id+"/commit", nil)
		if status < 400 {
			t.Fatalf("a stale commit of %s was taken: %d %+v", id, status, r)
		}
		if _, ok := b.eng.Arrived(id); ok {
			t.Fatalf("a stale commit of %s restored the app", id)
		}
	}

	// Called off by the source, then committed late.
	dropped, _, _ := peer.offer(b, "late", 1<<20)
	peer.do(http.MethodDelete, "/"+dropped, nil)
	commitRefused(peer, dropped)
	if got := outcome(peer, dropped); got != OutcomeAborted {
		t.Fatalf("outcome of a dropped handoff: %s", got)
	}

	// Asked how it ended before any commit came: the answer fences it.
	asked, _, _ := peer.offer(b, "asked", 1<<20)
	if got := outcome(peer, asked); got != OutcomeAborted {
		t.Fatalf("outcome before a commit: %s, want aborted", got)
	}
	commitRefused(peer, asked)

	// A restarted daemon (a new receiver on the same journal) still knows.
	rv2 := &Receiver{Engine: b.eng, WorkDir: b.work, Journal: journal}
	rv2.Recover()
	peer2 := newRawPeer(t, rv2)
	for _, id := range []string{dropped, asked} {
		if got := outcome(peer2, id); got != OutcomeAborted {
			t.Fatalf("after a restart, outcome of %s: %s", id, got)
		}
		commitRefused(peer2, id)
	}
}
