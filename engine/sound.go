package engine

import (
	"context"
	"fmt"
	"net"
)

// Every app has a sound server of its own: a PulseAudio daemon started by
// the container's init beside the X server, with one null sink that the
// app plays into and whose monitor the daemon reads for viewers (see
// DialSound). PulseAudio, not PipeWire: one process that CRIU dumps and
// restores while an app plays through it (a PipeWire server needs three
// and a session bus, its dumps were twice as slow, and its restore failed
// by the third suspend here).
//
// It runs as the container's root, not as the app's user, with its socket
// in a directory only that root may write: the app cannot end it or put
// another server in its place, so the daemon only ever talks to the server
// the init started. Apps find it through PULSE_SERVER, which every
// PulseAudio client honours (libpulse, and so GTK, Qt, SDL, GStreamer,
// browsers, ALSA's pulse plugin). Any process of the container may play:
// the socket is its only door, and anonymous authentication spares the
// app's home a cookie. Clients may not load modules or end the server.
// module-suspend-on-idle stops the sink's clock when nothing plays, so a
// silent app's server never wakes.
const (
	soundDir    = handoffDir + "/sound"
	soundSocket = soundDir + "/native"
	// SoundSink is the null sink apps play into; its monitor source is
	// SoundSink + ".monitor".
	SoundSink = "handoff"
)

// soundServer is the init script's part that starts the sound server
// (unless the spec asked for none) and sets $sound to its PID; soundWait,
// after the X server started, waits for its socket (up to 5 s), as for the
// X server's: an app that plays at once, started before the server
// listens, fails to connect and stays silent (it happened under load).
const soundServer = `sound=
if [ -z "$HANDOFF_NO_SOUND" ]; then
	mkdir -p -m 755 ` + soundDir + `
	HOME=` + soundDir + ` XDG_RUNTIME_DIR=` + soundDir + ` pulseaudio -n --daemonize=no --system=no \
		--use-pid-file=no --exit-idle-time=-1 --disallow-exit --disallow-module-loading \
		--realtime=no --high-priority=no --log-target=stderr --log-level=error \
		-L "module-null-sink sink_name=` + SoundSink + ` rate=48000 channels=2" \
		-L "module-native-protocol-unix socket=` + soundSocket + ` auth-anonymous=1 auth-cookie-enabled=0" \
		-L "module-suspend-on-idle timeout=1" &
	sound=$!
fi`

const soundWait = `i=0
while [ -n "$sound" ] && [ ! -S ` + soundSocket + ` ] && [ $i -lt 200 ]; do sleep 0.025; i=$((i+1)); done`

// DialSound connects to the app's sound server (the PulseAudio native
// protocol). Like DialDisplay, the socket is found inside the container's
// root without following any link. The caller must close the connection
// before the app is checkpointed (see Config.BeforeCheckpoint).
func (e *Engine) DialSound(ctx context.Context, name string) (net.Conn, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	in := a.info()
	if in.State != StateRunning && in.State != StateFrozen {
		return nil, &StateError{App: name, Op: "connect to the sound of", State: in.State}
	}
	a.mu.Lock()
	noSound := a.rec.Spec.NoSound
	a.mu.Unlock()
	if noSound {
		return nil, fmt.Errorf("%q runs without sound", name)
	}
	conn, err := dialInRoot(ctx, in.PID, soundSocket)
	if err != nil {
		return nil, fmt.Errorf("sound server of %q: %w", name, err)
	}
	return conn, nil
}
