package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine"
)

// An app belongs to the user who started it. The daemon knows who sends a
// local API request from the socket's peer credentials (SO_PEERCRED), never
// from anything in the request: a user sees and acts on their own apps
// only; root on every app.

// caller is who sent a local API request.
type caller struct {
	UID  int
	Name string // the account's name; "" when it has none
}

// IsRoot reports whether the caller is root.
func (c caller) IsRoot() bool { return c.UID == 0 }

// owns reports whether the caller may see and act on an app of user.
func (c caller) owns(user string) bool { return c.IsRoot() || (c.Name != "" && c.Name == user) }

// callerOf returns the caller of a request from its connection's
// credentials; ok is false when the connection carried none.
func callerOf(ctx context.Context) (caller, bool) {
	cred, ok := ctx.Value(credKey{}).(unix.Ucred)
	if !ok {
		return caller{}, false
	}
	c := caller{UID: int(cred.Uid)}
	if u, err := engine.LookupUser("", c.UID); err == nil {
		c.Name = u.Name
	}
	return c, true
}

// errNotYours answers a request about an app of another user as if the app
// did not exist: its name is nobody else's business.
func errNotYours(name string) error {
	return fmt.Errorf("%w: %q (see `handoff ls`)", engine.ErrNotFound, name)
}

// appUser decides whom an app the caller asks for runs as: the caller
// itself; another user (as) only for root; root only when root asks for it.
// A root caller that names nobody runs the app as the user who ran sudo.
func appUser(c caller, as, sudoUser string) (engine.User, error) {
	switch {
	case as == "" && !c.IsRoot():
		return engine.LookupUser("", c.UID)
	case as == "" && sudoUser != "" && sudoUser != "root":
		return engine.LookupUser(sudoUser, 0)
	case as == "":
		return engine.User{}, fmt.Errorf("%w: root's apps run as a user: pass --as USER (or --as root to run it as root, where it cannot be handed off)", engine.ErrInvalidSpec)
	case as == c.Name:
		return engine.LookupUser("", c.UID)
	case !c.IsRoot() && as == "root":
		return engine.User{}, fmt.Errorf("%w: only root may run an app as root", errForbidden)
	case !c.IsRoot():
		return engine.User{}, fmt.Errorf("%w: you may run apps only as yourself (%s), not as %s", errForbidden, c.Name, as)
	default:
		return engine.LookupUser(as, 0)
	}
}

// errForbidden is a request the caller may not make.
var errForbidden = errors.New("not allowed")

// ownApp looks an app up for the caller: an app of another user is not
// found. It writes the error answer and returns false when there is none.
func (h *handler) ownApp(w http.ResponseWriter, r *http.Request) (engine.Info, bool) {
	name := r.PathValue("name")
	c, ok := callerOf(r.Context())
	info, err := h.d.engine.Get(name)
	if err == nil && (!ok || !c.owns(info.User)) {
		err = errNotYours(name)
	}
	if err != nil {
		h.writeEngineError(w, err)
		return engine.Info{}, false
	}
	return info, true
}

// visible filters apps to those the caller owns.
func visible(ctx context.Context, apps []engine.Info) []engine.Info {
	c, ok := callerOf(ctx)
	out := make([]engine.Info, 0, len(apps))
	for _, a := range apps {
		if ok && c.owns(a.User) {
			out = append(out, a)
		}
	}
	return out
}

// LocaleEnv picks, from a client's environment, what an app it starts takes
// along: the user's language and formats.
func LocaleEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if name == "LANG" || name == "LANGUAGE" || strings.HasPrefix(name, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}
