// Package cleanlocale keeps Fyne from logging "Error parsing user locale C"
// on every run of handoff under LANG=C.UTF-8 (Debian's default in containers
// and services, and what the Makefile exports).
//
// The message comes from fyne.io/fyne/v2/lang's init: it reads the locale
// with github.com/jeandeaual/go-locale, which treats only "C" and "POSIX" as
// "no locale"; "C.UTF-8" becomes the language "C", which is not a BCP 47
// tag, and lang logs the parse error, twice, before main runs. This package
// has no dependencies beyond the standard library and an import path that
// sorts before github.com/jeandeaual, so Go initialises it first (packages
// are initialised in import-path order once their own imports are ready):
// its init sets LANGUAGE=en for exactly that case, which go-locale then
// reads instead. Restore undoes it before main does anything else, so that
// no child process inherits the change.
package cleanlocale

import (
	"os"
	"strings"
)

var changed bool

func init() {
	if NeedsFix(os.Getenv) {
		changed = os.Setenv("LANGUAGE", "en") == nil
	}
}

// NeedsFix reports whether an environment makes go-locale hand Fyne the
// unparsable language "C": the first of LC_ALL, LC_MESSAGES and LANG that is
// set is C.<codeset> or POSIX.<codeset>, and LANGUAGE is empty.
func NeedsFix(getenv func(string) string) bool {
	var loc string
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if loc = getenv(v); loc != "" {
			break
		}
	}
	if getenv("LANGUAGE") != "" {
		return false
	}
	return strings.HasPrefix(loc, "C.") || strings.HasPrefix(loc, "POSIX.")
}

// Restore removes the LANGUAGE this package set, if it set one.
func Restore() {
	if changed {
		os.Unsetenv("LANGUAGE")
		changed = false
	}
}
