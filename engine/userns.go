package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/userns"
	"github.com/opencontainers/runc/libcontainer/configs"
)

// Every app runs in a user namespace of its own. Inside, the app's user has
// the ids it has on the machine that started the app, and the container's
// own root (its init and X server) is root; outside, they are this machine's
// account of the same user and an unprivileged id of the app's own (its
// "root id", from a block nobody else uses). So the app's files in its
// home are the user's here, a process of the app that gains root in its
// container is nobody here, and an image a peer sends is restored with no
// more power than that: whatever ids its processes claim, the kernel knows
// only the ones mapped here.

// Subordinate ids: every app gets a block of idBlock host ids, the first
// for its container's root, the others for groups of its user that have no
// account here. Blocks start at idBase plus an offset drawn from the state
// dir, so that engines side by side (tests, simulated workstations) use
// different blocks.
const (
	idBase    = 1 << 30
	idBlock   = 64
	idEngines = 1 << 12 // offsets idBase may be moved by
	idApps    = 1 << 10 // blocks per engine
)

// hostIDs is how an app's user meets this machine: its account here.
type hostIDs struct {
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	Home   string      `json:"home"`   // the user's home on this machine
	Root   int         `json:"root"`   // host id of the container's root
	Groups map[int]int `json:"groups"` // inside gid → host gid, supplementary groups
}

// resolveHost finds the account of u's user on this machine and gives the
// app the subordinate block root. A root app is root here too (only root may
// start one, and none is received from a peer).
func resolveHost(u User, root int) (hostIDs, error) {
	local, err := LookupUser(u.Name, 0)
	if err != nil {
		return hostIDs{}, err
	}
	h := hostIDs{UID: local.UID, GID: local.GID, Home: local.Home, Root: root, Groups: map[int]int{}}
	if u.IsRoot() != (local.UID == 0) {
		return hostIDs{}, fmt.Errorf("user %s is root on one machine and not on the other", u.Name)
	}
	used := map[int]bool{h.GID: true, root: true}
	next := root + 1
	for _, g := range u.Groups {
		if g.GID == u.GID || g.GID == 0 {
			continue // the primary group is mapped already; root's is the container's
		}
		if gid, ok := groupGID(g.Name); ok && !used[gid] && gid != 0 {
			h.Groups[g.GID] = gid
			used[gid] = true
			continue
		}
		// No such group here: the app keeps the group inside, backed by an
		// id of its own block that grants nothing on this machine.
		if next >= root+idBlock {
			break
		}
		h.Groups[g.GID] = next
		next++
	}
	return h, nil
}

// idMaps are the uid and gid maps of an app's user namespace.
func idMaps(u User, h hostIDs) (uids, gids []configs.IDMap) {
	if u.IsRoot() {
		return []configs.IDMap{{ContainerID: 0, HostID: 0, Size: 1}},
			[]configs.IDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	}
	uids = []configs.IDMap{
		{ContainerID: 0, HostID: int64(h.Root), Size: 1},
		{ContainerID: int64(u.UID), HostID: int64(h.UID), Size: 1},
	}
	gids = []configs.IDMap{
		{ContainerID: 0, HostID: int64(h.Root), Size: 1},
		{ContainerID: int64(u.GID), HostID: int64(h.GID), Size: 1},
	}
	inside := make([]int, 0, len(h.Groups))
	for g := range h.Groups {
		inside = append(inside, g)
	}
	slices.Sort(inside)
	for _, g := range inside {
		gids = append(gids, configs.IDMap{ContainerID: int64(g), HostID: int64(h.Groups[g]), Size: 1})
	}
	return uids, gids
}

// toHost and toInside translate ids of files in the app's upper dir between
// this machine and the container, for an upper dir that travels: files of
// the container's root and of the user keep their owner on every machine.
// An id with no mapping is this machine's root (files the engine wrote).
func toInside(maps []configs.IDMap, host int) int {
	for _, m := range maps {
		if int64(host) >= m.HostID && int64(host) < m.HostID+m.Size {
			return int(m.ContainerID + int64(host) - m.HostID)
		}
	}
	return overflowID
}

func toHost(maps []configs.IDMap, inside int) int {
	for _, m := range maps {
		if int64(inside) >= m.ContainerID && int64(inside) < m.ContainerID+m.Size {
			return int(m.HostID + int64(inside) - m.ContainerID)
		}
	}
	return 0
}

// overflowID is what the kernel shows for an id that has no mapping.
const overflowID = 65534

// rewriteUsernsImage makes a CRIU image's user namespace this machine's:
// CRIU restores the namespace with the maps in its image, which name the
// ids of the machine that dumped it (or, from a hostile peer, any ids at
// all). The maps the engine computed for the app replace them, whole.
func rewriteUsernsImage(dir string, uids, gids []configs.IDMap) error {
	matches, err := filepath.Glob(filepath.Join(dir, "userns-*.img"))
	if err != nil {
		return err
	}
	switch {
	case len(matches) == 0:
		return errors.New("the image has no user namespace: it was not made by this version of Handoff")
	case len(matches) > 1:
		return fmt.Errorf("the image has %d user namespaces; an app may have only its own", len(matches))
	}
	path := matches[0]
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	img, err := crit.New(in, nil, "", false, false).Decode(&userns.UsernsEntry{})
	in.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if len(img.Entries) != 1 {
		return fmt.Errorf("%s has %d entries, not 1", filepath.Base(path), len(img.Entries))
	}
	img.Entries[0].Message = &userns.UsernsEntry{UidMap: extents(uids), GidMap: extents(gids)}
	tmp := path + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	err = crit.New(nil, out, "", false, false).Encode(img)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp, path)
}

func extents(maps []configs.IDMap) []*userns.UidGidExtent {
	out := make([]*userns.UidGidExtent, 0, len(maps))
	for _, m := range maps {
		first, lower, count := uint32(m.ContainerID), uint32(m.HostID), uint32(m.Size)
		out = append(out, &userns.UidGidExtent{First: &first, LowerFirst: &lower, Count: &count})
	}
	return out
}

// prepareImages readies an app's image dir for a restore from inside its
// user namespace: the namespace's maps are this machine's (the image may
// come from another machine, or a peer), and the restoring CRIU, which
// switches to the container's root midway, can still read the images: they
// belong to the daemon and the app's root group.
func (e *Engine) prepareImages(a *app) error {
	dir := a.dirs.checkpoint()
	uids, gids := idMaps(a.rec.Spec.User, a.rec.Host)
	if err := rewriteUsernsImage(dir, uids, gids); err != nil {
		return fmt.Errorf("the image's user namespace: %w", err)
	}
	group := a.containerRoot()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, ent.Name())
		if err := os.Lchown(p, 0, group); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o640); err != nil {
			return err
		}
	}
	if err := os.Chown(dir, 0, group); err != nil {
		return err
	}
	return os.Chmod(dir, 0o750)
}

// RenameImageFiles points the files an image's processes hold open or
// mapped at other paths: renames maps container paths to what the restore
// must open instead (a file of the user's home that was changed on this
// machine too is kept, and the app gets the version it had, saved beside it).
func RenameImageFiles(dir string, renames map[string]string) error {
	if len(renames) == 0 {
		return nil
	}
	p := filepath.Join(dir, "files.img")
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	img, err := crit.New(in, nil, "", false, false).Decode(&fdinfo.FileEntry{})
	in.Close()
	if err != nil {
		return fmt.Errorf("read files.img: %w", err)
	}
	for _, ent := range img.Entries {
		fe, ok := ent.Message.(*fdinfo.FileEntry)
		if !ok || fe.Reg == nil {
			continue
		}
		name := fe.Reg.GetName()
		to, ok := renames["/"+strings.TrimPrefix(name, "/")]
		if !ok {
			continue
		}
		if !strings.HasPrefix(name, "/") {
			to = strings.TrimPrefix(to, "/")
		}
		fe.Reg.Name = &to
	}
	tmp := p + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	err = crit.New(nil, out, "", false, false).Encode(img)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write files.img: %w", err)
	}
	return os.Rename(tmp, p)
}
