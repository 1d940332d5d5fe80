package ui

import (
	"context"
	"errors"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
)

// prompt is a window asking the user about a peer's request: an incoming
// app, or pairing. It is a window of its own because the tray may have
// no other window open.
type prompt struct {
	t      *Tray
	req    app.HandoffRequest
	win    fyne.Window
	always *widget.Check
	accept *widget.Button
	refuse *widget.Button
	status *widget.Label
	closed bool
}

// codeText shows a pairing code large, in two groups of three.
func codeText(code string) *canvas.Text {
	if len(code) == 6 {
		code = code[:3] + " " + code[3:]
	}
	t := canvas.NewText(code, theme.Color(theme.ColorNameForeground))
	t.TextSize = 36
	t.TextStyle = fyne.TextStyle{Bold: true, Monospace: true}
	t.Alignment = fyne.TextAlignCenter
	return t
}

func (t *Tray) showRequest(req app.HandoffRequest) {
	if p := t.prompts[req.ID]; p != nil {
		p.win.RequestFocus()
		return
	}
	p := newPrompt(t, req)
	t.prompts[req.ID] = p
	p.win.Show()
	p.win.RequestFocus()
}

func newPrompt(t *Tray, req app.HandoffRequest) *prompt {
	p := &prompt{t: t, req: req}
	// The name is the one this device stored when it trusted the other
	// (for a pairing, what the other calls itself); the short ID is the
	// part no device can choose.
	name, from := req.From, req.From
	switch {
	case from == "":
		name, from = "the other device", "A device ("+req.FromID.Short()+")"
	case !req.FromID.IsZero():
		from += " (" + req.FromID.Short() + ")"
	}
	p.status = widget.NewLabel("")
	p.status.Wrapping = fyne.TextWrapWord
	p.status.Hide()
	var title, question, detail, yes string
	var extra []fyne.CanvasObject
	switch req.Kind {
	case "pair":
		title = "Pair with " + from + "?"
		question = from + " wants to pair with this device"
		detail = "Pair only if " + name + " shows the same code:"
		yes = "The codes match"
		extra = append(extra, codeText(req.Code))
	default:
		title = "Incoming app"
		question = from + " wants to hand you " + req.App
		detail = req.App + " will run on this device with everything it has open, and " +
			name + " will show it from here."
		yes = "Accept"
		p.always = widget.NewCheck("Always accept from this device", nil)
		extra = append(extra, p.always)
	}
	p.win = t.fa.NewWindow("Handoff — " + title)
	p.win.SetIcon(iconApp)
	q := widget.NewLabelWithStyle(question, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	q.Wrapping = fyne.TextWrapWord
	d := widget.NewLabel(detail)
	d.Wrapping = fyne.TextWrapWord
	p.accept = widget.NewButtonWithIcon(yes, theme.ConfirmIcon(), func() { p.answer(true) })
	p.accept.Importance = widget.HighImportance
	p.refuse = widget.NewButtonWithIcon("Decline", theme.CancelIcon(), func() { p.answer(false) })
	body := container.NewVBox(append([]fyne.CanvasObject{q, d}, extra...)...)
	body.Add(p.status)
	buttons := container.NewHBox(layout.NewSpacer(), p.refuse, p.accept)
	logo := container.NewVBox(sizedIcon(iconLogo, 48))
	content := container.NewPadded(container.NewBorder(nil, buttons, logo, nil, body))
	p.win.SetContent(content)
	content.Resize(fyne.NewSize(460, content.MinSize().Height))
	p.win.Resize(fyne.NewSize(460, content.MinSize().Height))
	p.win.SetFixedSize(true)
	p.win.SetCloseIntercept(func() { p.answer(false) })
	return p
}

// answer tells the daemon; with "always accept", the peer is trusted with
// auto-accept first, so its next apps come without asking.
func (p *prompt) answer(yes bool) {
	if p.closed {
		return
	}
	p.accept.Disable()
	p.refuse.Disable()
	always := yes && p.always != nil && p.always.Checked
	req := p.req
	p.t.async(func() {
		ctx, cancel := context.WithTimeout(p.t.ctx, 30*time.Second)
		defer cancel()
		var err error
		if always {
			// No name: the one stored when the device was trusted stays
			// (req.From is that name with the device's short ID).
			_, err = p.t.do.Trust(ctx, req.FromID.String(), app.TrustRequest{AutoAccept: true})
		}
		if err == nil {
			err = p.t.do.Answer(ctx, req.ID, yes)
		}
		fyne.Do(func() {
			if err != nil && app.IsNotFound(err) {
				err = errors.New("the request is no longer waiting: " + req.From + " gave up or it timed out")
			}
			if err != nil {
				p.status.SetText(plainReason(err.Error(), req.From))
				p.status.Show()
				p.refuse.SetText("Close")
				p.refuse.OnTapped = p.close
				p.refuse.Enable()
				return
			}
			if yes {
				p.t.model.Accepted(req)
			} else {
				p.t.model.Answered(req.ID)
			}
			p.close()
		})
	})
}

// withdrawn: the peer cancelled or the request timed out.
func (p *prompt) withdrawn() {
	if p.closed {
		return
	}
	p.status.SetText(p.req.From + " withdrew the request.")
	p.status.Show()
	p.accept.Disable()
	p.refuse.SetText("Close")
	p.refuse.OnTapped = p.close
	p.refuse.Enable()
}

func (p *prompt) close() {
	if p.closed {
		return
	}
	p.closed = true
	delete(p.t.prompts, p.req.ID)
	p.win.Close()
}

// pair runs the pairing dialog with a peer from the Devices window: start
// the pairing (both devices then show the code), and once the user
// confirms it matches, wait for the peer's user to confirm there.
func (t *Tray) pair(peer app.PeerView) {
	if t.devices == nil {
		return
	}
	parent := t.devices.win
	key := peer.ID.String()
	t.async(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 20*time.Second)
		defer cancel()
		pc, err := t.do.PairCode(ctx, key)
		fyne.Do(func() {
			if err != nil {
				t.failed("Could not pair with "+peer.Name, err)
				return
			}
			newPairDialog(t, peer, pc, parent).Show()
		})
	})
}

// addPeer saves an address where a device may be found and says what
// answered there.
func (t *Tray) addPeer(address string) {
	t.async(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 20*time.Second)
		defer cancel()
		added, err := t.do.AddPeer(ctx, address)
		fyne.Do(func() {
			if err != nil {
				t.failed("Could not add "+address, err)
				return
			}
			title, msg := addedText(added)
			if t.devices != nil {
				t.devices.hint.SetText(msg)
				dialog.ShowInformation(title, wrapText(msg, 60), t.devices.win)
			}
		})
	})
}

// removePeer forgets the saved addresses of a device found by address.
func (t *Tray) removePeer(v app.PeerView) {
	t.call("forget the address of "+v.Name, func(ctx context.Context) error {
		_, err := t.do.RemovePeer(ctx, v.ID.String())
		return err
	})
}

// pairDialog asks the user to compare codes, then waits for the other side.
type pairDialog struct {
	*dialog.CustomDialog
	status  *widget.Label
	confirm *widget.Button
	cancelB *widget.Button
	wait    *widget.ProgressBarInfinite
	cancel  context.CancelFunc
}

func newPairDialog(t *Tray, peer app.PeerView, pc app.PairCode, parent fyne.Window) *pairDialog {
	d := &pairDialog{status: widget.NewLabel("Check that " + peer.Name + " shows the same code:"),
		wait: widget.NewProgressBarInfinite()}
	d.status.Wrapping = fyne.TextWrapWord
	d.wait.Hide()
	d.wait.Stop()
	d.confirm = widget.NewButtonWithIcon("The codes match", theme.ConfirmIcon(), nil)
	d.confirm.Importance = widget.HighImportance
	d.cancelB = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), nil)
	content := container.NewVBox(d.status, codeText(pc.Code), d.wait)
	sized := container.New(layout.NewGridWrapLayout(fyne.NewSize(380, content.MinSize().Height+20)), content)
	d.CustomDialog = dialog.NewCustomWithoutButtons("Pair with "+peer.Name, sized, parent)
	d.SetButtons([]fyne.CanvasObject{d.cancelB, d.confirm})
	d.cancelB.OnTapped = func() {
		if d.cancel != nil {
			d.cancel() // the peer's prompt is withdrawn
		}
		t.async(func() { // the peer's prompt goes away
			ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
			defer cancel()
			_ = t.do.PairCancel(ctx, pc.ID.String())
		})
		d.Hide()
	}
	d.confirm.OnTapped = func() {
		d.confirm.Disable()
		d.status.SetText("Waiting for " + peer.Name + "'s user to confirm the same code there…")
		d.wait.Show()
		d.wait.Start()
		ctx, cancel := context.WithCancel(t.ctx)
		d.cancel = cancel
		t.async(func() {
			defer cancel()
			v, err := t.do.Pair(ctx, pc.ID.String(), pc.Code)
			fyne.Do(func() {
				d.wait.Stop()
				d.wait.Hide()
				if errors.Is(err, context.Canceled) || ctx.Err() != nil {
					return
				}
				if err != nil {
					d.status.SetText(plainReason(err.Error(), peer.Name))
					d.cancelB.SetText("Close")
					return
				}
				d.Hide()
				t.notify("Paired with "+v.Name, "You can now send apps to "+v.Name+" and receive apps from it.")
			})
		})
	}
	return d
}
