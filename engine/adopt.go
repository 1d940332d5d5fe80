package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
)

// adoptAll loads every persisted app and reconciles its recorded state with
// what is really there: containers that still run are watched again, an
// operation cut short by a crash is settled to the state the disk shows.
func (e *Engine) adoptAll() error {
	entries, err := os.ReadDir(filepath.Join(e.cfg.StateDir, "apps"))
	if err != nil {
		return fmt.Errorf("engine: read apps: %w", err)
	}
	for _, ent := range entries {
		if !ent.IsDir() || !ValidName(ent.Name()) {
			continue
		}
		a := &app{dirs: e.dirsOf(ent.Name())}
		data, err := os.ReadFile(a.dirs.record())
		if err != nil {
			e.log.Warn("skip app without record", "dir", a.dirs.root, "err", err)
			continue
		}
		if err := json.Unmarshal(data, &a.rec); err != nil || a.rec.Spec.Name != ent.Name() {
			e.log.Warn("skip app with unreadable record", "dir", a.dirs.root, "err", err)
			continue
		}
		e.apps[a.rec.Spec.Name] = a
		e.adopt(a)
	}
	return nil
}

func (e *Engine) adopt(a *app) {
	name := a.rec.Spec.Name
	ctr, err := libcontainer.Load(e.runcRoot, name)
	if err != nil && !errors.Is(err, libcontainer.ErrNotExist) {
		e.log.Warn("load container", "app", name, "err", err)
	}
	running, frozen := false, false
	if ctr != nil {
		st, _ := ctr.Status()
		switch st {
		case libcontainer.Paused:
			// Frozen by a handoff that did not finish: it stays frozen.
			// Whether it may run here again is the handoff's call (see
			// migration.Recover): its destination may run it already.
			running, frozen = true, true
		case libcontainer.Running, libcontainer.Created:
			running = true
		}
	}
	hasImage := verifySums(a.dirs.checkpoint()) == nil
	switch {
	case a.rec.State == StateStopping:
		a.ctr = ctr
		e.removeAll(a)
		delete(e.apps, name)
		return
	case running:
		state, _ := ctr.State()
		a.ctr = ctr
		// Adoption takes the state the container is really in: no
		// lifecycle move, a reconciliation.
		a.rec.State = StateRunning
		if frozen {
			a.rec.State = StateFrozen
		}
		a.rec.InitPID = state.InitProcessPid
		e.watch(a, a.rec.InitPID, nil)
		e.watchHome(a, a.rec.InitPID)
	case hasImage:
		a.ctr = ctr
		e.destroyContainer(a)
		a.rec.State, a.rec.InitPID = StateSuspended, 0
	default:
		a.ctr = ctr
		e.destroyContainer(a)
		if a.rec.State != StateExited {
			a.rec.Error = "the app was not running when the daemon started"
		}
		a.rec.State, a.rec.InitPID = StateExited, 0
	}
	if err := writeJSONAtomic(a.dirs.record(), a.rec); err != nil {
		e.log.Warn("persist app state", "app", name, "err", err)
	}
	e.log.Info("adopted app", "app", name, "state", a.rec.State, "pid", a.rec.InitPID)
}
