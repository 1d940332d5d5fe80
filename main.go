// Command handoff moves running graphical apps between Linux workstations.
// One binary: the root daemon, the desktop tray and the CLI (see app/).
package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // bootstraps container inits before Go starts

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/internal/cleanlocale" // initialised first: quiets Fyne under LANG=C.UTF-8
	"github.com/handoff/handoff/ui"                   // the tray, and the viewer window behind `handoff view`
)

func main() {
	cleanlocale.Restore() // children must not inherit its LANGUAGE=en
	// libcontainer re-executes this binary as `handoff init` to become a
	// container's first process.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	if ui.IsTray(os.Args[1:]) {
		os.Exit(ui.Main(os.Args[1:]))
	}
	os.Exit(app.Main(os.Args[1:]))
}
