package engine

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// User is the person an app belongs to and runs as: its identity inside the
// container, which stays the same on every machine the app visits. On the
// machine that started the app it equals the user's own accounts entry; on
// another, the same name may have other ids and another home, which the
// engine maps (see hostUser).
type User struct {
	Name   string  `json:"name"`
	UID    int     `json:"uid"`
	GID    int     `json:"gid"`
	Groups []Group `json:"groups,omitempty"` // supplementary groups
	Home   string  `json:"home"`             // inside the container
	Shell  string  `json:"shell,omitempty"`
}

// Group is a group of the app's user, by name and id inside the container.
type Group struct {
	Name string `json:"name"`
	GID  int    `json:"gid"`
}

// IsRoot reports whether the app runs as root (only root may ask for that).
func (u User) IsRoot() bool { return u.UID == 0 }

// ErrNoSuchUser is returned when an app's user has no account here.
var ErrNoSuchUser = errors.New("no such user on this machine")

// LookupUser reads the accounts entry of the user named name, or with
// numeric id uid when name is empty, through the system's user database
// (NSS): the identity an app started by this user gets.
func LookupUser(name string, uid int) (User, error) {
	var u *user.User
	var err error
	if name != "" {
		u, err = user.Lookup(name)
	} else {
		u, err = user.LookupId(strconv.Itoa(uid))
	}
	if err != nil {
		var unknown user.UnknownUserError
		var unknownID user.UnknownUserIdError
		if errors.As(err, &unknown) || errors.As(err, &unknownID) {
			who := name
			if who == "" {
				who = "uid " + strconv.Itoa(uid)
			}
			return User{}, fmt.Errorf("%w: %s", ErrNoSuchUser, who)
		}
		return User{}, fmt.Errorf("look up user: %w", err)
	}
	out := User{Name: u.Username, Home: filepath.Clean(u.HomeDir), Shell: loginShell(u.Username)}
	if out.UID, err = strconv.Atoi(u.Uid); err != nil {
		return User{}, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	if out.GID, err = strconv.Atoi(u.Gid); err != nil {
		return User{}, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return User{}, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	for _, s := range gids {
		gid, err := strconv.Atoi(s)
		if err != nil || gid == out.GID {
			continue
		}
		g, err := user.LookupGroupId(s)
		if err != nil {
			continue
		}
		out.Groups = append(out.Groups, Group{Name: g.Name, GID: gid})
	}
	slices.SortFunc(out.Groups, func(a, b Group) int { return a.GID - b.GID })
	if out.Home == "" || !filepath.IsAbs(out.Home) {
		return User{}, fmt.Errorf("user %s has no usable home directory (%q)", out.Name, u.HomeDir)
	}
	return out, nil
}

// groupGID looks a group's id up by name on this machine.
func groupGID(name string) (int, bool) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, false
	}
	gid, err := strconv.Atoi(g.Gid)
	return gid, err == nil
}

// loginShell is the user's shell from the accounts database, or /bin/sh.
// os/user does not expose it; the passwd entry is read as NSS gives it.
func loginShell(name string) string {
	if sh := passwdShell(name); sh != "" {
		return sh
	}
	return "/bin/sh"
}

// passwdShell returns the shell field of name's line in /etc/passwd, or "".
func passwdShell(name string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}
