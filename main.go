// Command handoff moves running graphical apps between Linux workstations.
// One binary: the root daemon, the desktop tray and the CLI (see app/).
package main

import (
	"os"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // bootstraps container inits before Go starts

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/internal/cleanlocale" // initialised first: quiets Fyne under LANG=C.UTF-8
	"github.com/handoff/handoff/ui"                   // the tray, and the viewer window behind `handoff view`
)

// The main goroutine keeps the main thread for the process's life. Goroutines
// of libcontainer enter a container's namespaces on a locked thread and end
// without unlocking it, which ends the thread — except the main thread,
// which the runtime cannot end: it would stay in that container's mount
// namespace, keep its mounts (the app's root) alive, and the app's next
// resume could not mount its root again.
func init() { runtime.LockOSThread() }

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
