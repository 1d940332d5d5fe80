package ui

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
)

// runWindow starts an app: pick an installed one (searchable) or type any
// command.
type runWindow struct {
	t       *Tray
	win     fyne.Window
	all     []installedApp
	shown   []installedApp
	search  *widget.Entry
	list    *widget.List
	command *widget.Entry
	name    *widget.Entry
	run     *widget.Button
	// nameEdited: the user typed a name, so picking an app keeps it.
	nameEdited  bool
	settingName bool
}

func newRunWindow(t *Tray, apps []installedApp) *runWindow {
	r := &runWindow{t: t, all: apps, shown: apps}
	r.win = t.fa.NewWindow("Handoff — Run app")
	r.win.SetIcon(iconApp)
	r.search = widget.NewEntry()
	r.search.SetPlaceHolder("Search installed apps")
	r.search.ActionItem = widget.NewIcon(theme.SearchIcon())
	r.search.OnChanged = r.filter
	r.list = widget.NewList(
		func() int { return len(r.shown) },
		func() fyne.CanvasObject {
			name := widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
			cmd := widget.NewLabel("")
			cmd.Truncation = fyne.TextTruncateEllipsis
			name.Truncation = fyne.TextTruncateEllipsis
			return container.NewBorder(nil, nil, widget.NewIcon(iconAppTile), nil, container.NewGridWithColumns(2, name, cmd))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			row := o.(*fyne.Container).Objects[0].(*fyne.Container)
			row.Objects[0].(*widget.Label).SetText(r.shown[i].Name)
			row.Objects[1].(*widget.Label).SetText(strings.Join(r.shown[i].Exec, " "))
		})
	r.list.OnSelected = func(i widget.ListItemID) {
		if i < 0 || i >= len(r.shown) {
			return
		}
		a := r.shown[i]
		r.command.SetText(quoteCommand(a.Exec))
		if !r.nameEdited {
			r.setName(uniqueName(appNameFor(a.Name, a.Exec), r.t.state))
		}
	}
	r.command = widget.NewEntry()
	r.command.SetPlaceHolder("or type a command, e.g. xterm -fa Monospace")
	r.command.OnChanged = func(s string) {
		if !r.nameEdited {
			r.setName(uniqueName(appNameFor("", splitCommand(s)), r.t.state))
		}
		r.updateButton()
	}
	r.command.OnSubmitted = func(string) { r.start() }
	r.name = widget.NewEntry()
	r.name.SetPlaceHolder("name")
	r.name.OnChanged = func(string) {
		if !r.settingName {
			r.nameEdited = true
		}
		r.updateButton()
	}
	r.run = widget.NewButtonWithIcon("Run", theme.MediaPlayIcon(), r.start)
	r.run.Importance = widget.HighImportance
	cancel := widget.NewButton("Close", func() { r.win.Hide() })
	form := widget.NewForm(widget.NewFormItem("Command", r.command), widget.NewFormItem("Name", r.name))
	bottom := container.NewVBox(form, container.NewHBox(layout.NewSpacer(), cancel, r.run))
	r.win.SetContent(container.NewBorder(r.search, bottom, nil, nil, r.list))
	r.win.Resize(fyne.NewSize(560, 460))
	r.win.SetCloseIntercept(func() { r.win.Hide() })
	r.updateButton()
	return r
}

func (r *runWindow) setName(n string) {
	r.settingName = true
	r.name.SetText(n)
	r.settingName = false
}

func (r *runWindow) updateButton() {
	if len(splitCommand(r.command.Text)) > 0 && strings.TrimSpace(r.name.Text) != "" && r.t.state.Connected {
		r.run.Enable()
	} else {
		r.run.Disable()
	}
}

// filter shows the apps whose name or command contains every word typed.
func (r *runWindow) filter(q string) {
	r.shown = filterApps(r.all, q)
	r.list.UnselectAll()
	r.list.Refresh()
}

func filterApps(all []installedApp, q string) []installedApp {
	words := strings.Fields(strings.ToLower(q))
	if len(words) == 0 {
		return all
	}
	var out []installedApp
	for _, a := range all {
		hay := strings.ToLower(a.Name + " " + strings.Join(a.Exec, " "))
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(hay, w)
		}
		if ok {
			out = append(out, a)
		}
	}
	return out
}

// quoteCommand writes arguments back as a command line splitCommand reads.
func quoteCommand(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func (r *runWindow) start() {
	args := splitCommand(r.command.Text)
	name := strings.TrimSpace(r.name.Text)
	if len(args) == 0 || name == "" {
		return
	}
	r.run.Disable()
	t := r.t
	t.async(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 2*time.Minute)
		defer cancel()
		_, err := t.do.Run(ctx, app.RunRequest{Name: name, Args: args, Env: app.LocaleEnv(os.Environ()), SudoUser: sudoUser()})
		fyne.Do(func() {
			r.updateButton()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					dialog.ShowInformation("Could not run "+name, wrapText(plainReason(err.Error(), ""), 60), r.win)
				}
				return
			}
			r.win.Hide()
			r.command.SetText("")
			r.nameEdited = false
			r.setName("")
			t.showViewer(name)
		})
	})
}

// sudoUser is the user a tray run by root through sudo (`sudo handoff
// tray`) starts apps for; the daemon runs a root caller's apps as nobody
// else.
func sudoUser() string {
	if os.Geteuid() != 0 {
		return ""
	}
	return os.Getenv("SUDO_USER")
}
