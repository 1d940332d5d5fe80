package app

import (
	"errors"
	"testing"
)

// TestAppUserRules: whom an app runs as. Only root may pick another user or
// root; everyone else gets themselves.
func TestAppUserRules(t *testing.T) {
	alice := caller{UID: 4242, Name: "alice"}
	root := caller{UID: 0, Name: "root"}
	tests := []struct {
		name     string
		c        caller
		as, sudo string
		want     string // user name, or "" for an error
		err      error
	}{
		{"a user asks for root", alice, "root", "", "", errForbidden},
		{"a user asks for another user", alice, "bob", "", "", errForbidden},
		{"root asks for root", root, "root", "", "root", nil},
		{"root under sudo names nobody", root, "", "root", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := appUser(tt.c, tt.as, tt.sudo)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted as %+v", u)
				}
				return
			}
			if err != nil || u.Name != tt.want {
				t.Fatalf("got %+v, %v; want %s", u, err, tt.want)
			}
		})
	}
}

func TestOwns(t *testing.T) {
	if !(caller{UID: 0}).owns("alice") {
		t.Error("root does not own alice's app")
	}
	if (caller{UID: 5, Name: "bob"}).owns("alice") {
		t.Error("bob owns alice's app")
	}
	if (caller{UID: 5}).owns("") {
		t.Error("a caller without an account owns an app without a user")
	}
	if !(caller{UID: 5, Name: "alice"}).owns("alice") {
		t.Error("alice does not own her app")
	}
}
