package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine"
)

// Version is set at build time (-ldflags "-X github.com/handoff/handoff/app.Version=…").
var Version = "0.1.0-dev"

// Defaults for the places the daemon uses.
const (
	DefaultStateDir = "/var/lib/handoff"
	DefaultSocket   = "/run/handoff/handoff.sock"
	// SocketGroup may use the local API besides root.
	SocketGroup = "handoff"
)

// DaemonConfig says where a daemon keeps its things. Every place is a field so
// that tests can run several daemons side by side.
type DaemonConfig struct {
	StateDir string
	Socket   string
	// PeerListen is the peer channel's address (":7466" by default).
	PeerListen string
	// WebListen is the browser viewer's loopback address; "" turns it off.
	WebListen string
	// Name is this device's human name (the hostname by default).
	Name string
	// NoDiscovery turns mDNS off (the peer channel still listens, and
	// peers at saved addresses are still found).
	NoDiscovery bool
	Logger      *slog.Logger
}

// Daemon is a running Handoff daemon.
type Daemon struct {
	cfg    DaemonConfig
	log    *slog.Logger
	engine *engine.Engine
	events *hub
	peers  *peers // nil until the peer channel is up
	// streams shows apps running here to viewers.
	streams *streams
	web     *web // nil unless WebListen is set
	server  *http.Server
	ln      net.Listener
	// ctx is the base of every API request; Close cancels it so that
	// long-lived streams (events) end and shutdown does not wait for them.
	ctx    context.Context
	cancel context.CancelFunc
}

// StartDaemon opens the state, re-adopts apps and starts serving the local API.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (*Daemon, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the daemon needs root (CRIU and namespaces do); run it with sudo or as the handoffd service")
	}
	// Descriptors inherited from whoever started us (a shell, a test runner)
	// must not reach app containers: a pipe to a host process would block
	// every checkpoint of the app holding it.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		cfg.Logger.Warn("cannot mark inherited descriptors close-on-exec", "err", err)
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, events: newHub()}
	d.streams = newStreams(d)
	eng, err := engine.New(engine.Config{
		StateDir: cfg.StateDir,
		Logger:   cfg.Logger,
		OnChange: d.appChanged,
		BeforeCheckpoint: func(name string) bool {
			return d.streams.drop(name) // a viewer's X connection would block the dump
		},
		WarmHandles: true,
	})
	if err != nil {
		return nil, err
	}
	d.engine = eng
	if _, err := eng.Criu(ctx); err != nil {
		d.log.Warn("apps can run but not be suspended or moved", "err", err)
	}
	if err := d.startPeers(cfg); err != nil {
		eng.Close()
		return nil, err
	}
	ln, err := listenSocket(cfg.Socket)
	if err != nil {
		d.peers.close()
		eng.Close()
		return nil, err
	}
	d.ln = ln
	if cfg.WebListen != "" {
		if err := d.startWeb(cfg.WebListen); err != nil {
			d.log.Warn("no browser viewer", "err", err)
		}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.server = &http.Server{
		Handler:           newHandler(d),
		BaseContext:       func(net.Listener) context.Context { return d.ctx },
		ConnContext:       connContext,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := d.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("local API stopped", "err", err)
		}
	}()
	d.log.Info("daemon ready", "version", Version, "socket", cfg.Socket, "state", cfg.StateDir)
	return d, nil
}

// Engine returns the daemon's engine (for tests and in-process wiring).
func (d *Daemon) Engine() *engine.Engine { return d.engine }

// Close stops serving. Running apps keep running; the next daemon re-adopts them.
func (d *Daemon) Close() error {
	d.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := d.server.Shutdown(ctx)
	_ = os.Remove(d.cfg.Socket)
	if d.peers != nil {
		d.peers.close()
	}
	if d.web != nil {
		d.web.server.Close()
	}
	d.streams.closeAll()
	d.engine.Close()
	return err
}

func (d *Daemon) appChanged(info engine.Info) {
	if info.State != engine.StateRunning {
		d.streams.drop(info.Name)
	}
	if d.peers != nil && info.State == engine.StateRunning {
		d.peers.forgetRemote(info.Name) // it came back
	}
	if d.peers != nil && info.State == "" {
		d.peers.forgetReceived(info.Name) // it left or ended: nobody's to bring back
	}
	if info.State == "" {
		d.events.publish(Event{Type: EventAppRemoved, App: &info, User: info.User})
		return
	}
	d.events.publish(Event{Type: EventApp, App: &info, User: info.User})
}

// listenSocket creates the API socket: mode 0660, group handoff when that
// group exists. A stale socket from a crashed daemon is replaced; a live one
// means another daemon runs.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another Handoff daemon is already listening on %s", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	gid := -1
	if g, err := user.LookupGroup(SocketGroup); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
