package stream

import (
	"encoding/json"
	"fmt"
)

// InputKind says what an Input event is.
type InputKind string

const (
	InputPointer   InputKind = "pointer"   // the pointer moved to X, Y
	InputButton    InputKind = "button"    // mouse Button (1 left, 2 middle, 3 right) pressed or released at X, Y
	InputWheel     InputKind = "wheel"     // scrolled by WheelX, WheelY notches (positive: right, down)
	InputKey       InputKind = "key"       // X keysym Keysym pressed or released
	InputText      InputKind = "text"      // type Text as if on a keyboard (IME output, pasted words)
	InputClipboard InputKind = "clipboard" // the viewer's clipboard now holds Text: offer it to the app
)

// Input is one keyboard, mouse or clipboard event from a viewer to the app's
// display. Keys are X keysyms, so the viewer's keyboard layout decides which
// symbol a key makes and the app's display only has to find a keycode for it.
type Input struct {
	Kind   InputKind `json:"kind"`
	X      int       `json:"x,omitempty"`
	Y      int       `json:"y,omitempty"`
	Button int       `json:"button,omitempty"`
	Down   bool      `json:"down,omitempty"`
	Keysym uint32    `json:"keysym,omitempty"`
	WheelX int       `json:"wheelX,omitempty"`
	WheelY int       `json:"wheelY,omitempty"`
	Text   string    `json:"text,omitempty"`
}

// maxInputText bounds the text of one event: a clipboard larger than this is
// not worth stalling the input channel for.
const maxInputText = 1 << 20

// ParseInput decodes and validates one input event from the data channel.
func ParseInput(b []byte) (Input, error) {
	var in Input
	if err := json.Unmarshal(b, &in); err != nil {
		return Input{}, fmt.Errorf("input event: %w", err)
	}
	if err := in.Validate(); err != nil {
		return Input{}, err
	}
	return in, nil
}

// Validate reports whether an event is well formed.
func (in Input) Validate() error {
	switch in.Kind {
	case InputPointer, InputWheel:
	case InputButton:
		if in.Button < 1 || in.Button > 9 {
			return fmt.Errorf("input event: button %d out of range 1-9", in.Button)
		}
	case InputKey:
		if in.Keysym == 0 {
			return fmt.Errorf("input event: key without keysym")
		}
	case InputText, InputClipboard:
		if len(in.Text) > maxInputText {
			return fmt.Errorf("input event: %d bytes of text, more than %d", len(in.Text), maxInputText)
		}
	default:
		return fmt.Errorf("input event: unknown kind %q", in.Kind)
	}
	// X takes positions as 16-bit signed numbers: 32768 would wrap to -32768.
	if in.X < 0 || in.Y < 0 || in.X >= 1<<15 || in.Y >= 1<<15 {
		return fmt.Errorf("input event: position %d,%d off any screen", in.X, in.Y)
	}
	return nil
}
