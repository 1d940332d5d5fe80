package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/handles"
	"github.com/handoff/handoff/engine/migration"
)

// Client talks to a Handoff daemon over its local API. The CLI and the tray
// use it; it has one method per endpoint.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket (the default
// socket, or $HANDOFF_SOCKET, when empty).
func NewClient(socket string) *Client {
	socket = SocketPath(socket)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

// SocketPath resolves the daemon's socket: the given path, else
// $HANDOFF_SOCKET, else the default.
func SocketPath(socket string) string {
	if socket == "" {
		socket = os.Getenv("HANDOFF_SOCKET")
	}
	if socket == "" {
		socket = DefaultSocket
	}
	return socket
}

// APIError is an error reported by the daemon.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// IsNotFound reports whether err says the app does not exist.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read the daemon's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// send performs a request and turns non-2xx answers into *APIError.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+apiHost+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the Handoff daemon at %s (is it running? start it with `sudo systemctl start handoffd` or `sudo handoff daemon`): %w", c.Socket, unwrapNet(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var ae apiError
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return nil, &APIError{Status: resp.StatusCode, Code: ae.Code, Message: ae.Error}
	}
	return resp, nil
}

func unwrapNet(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func appPath(name string, rest string) string {
	return "/v0/apps/" + url.PathEscape(name) + rest
}

// Status returns the daemon's version and CRIU state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v0/status", nil, &st)
	return st, err
}

// Apps lists the daemon's apps.
func (c *Client) Apps(ctx context.Context) ([]engine.Info, error) {
	var apps []engine.Info
	err := c.do(ctx, http.MethodGet, "/v0/apps", nil, &apps)
	return apps, err
}

// App returns one app.
func (c *Client) App(ctx context.Context, name string) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodGet, appPath(name, ""), nil, &info)
	return info, err
}

// Run starts an app in a new container.
func (c *Client) Run(ctx context.Context, req RunRequest) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodPost, "/v0/apps", req, &info)
	return info, err
}

// Stop ends an app and removes it.
func (c *Client) Stop(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, appPath(name, ""), nil, nil)
}

// Suspend checkpoints an app to disk.
func (c *Client) Suspend(ctx context.Context, name string) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodPost, appPath(name, "/suspend"), nil, &info)
	return info, err
}

// Resume restores a suspended app.
func (c *Client) Resume(ctx context.Context, name string) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodPost, appPath(name, "/resume"), nil, &info)
	return info, err
}

// Handles returns an app's handles manifest.
func (c *Client) Handles(ctx context.Context, name string) (*handles.Manifest, error) {
	resp, err := c.send(ctx, http.MethodGet, appPath(name, "/handles"), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return handles.Parse(data)
}

// Screenshot writes the app's current display as PNG to w.
func (c *Client) Screenshot(ctx context.Context, name string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, appPath(name, "/screenshot"), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Events streams the daemon's events until ctx ends or the daemon goes away;
// the channel is closed then.
func (c *Client) Events(ctx context.Context) (<-chan Event, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v0/events", nil)
	if err != nil {
		return nil, err
	}
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var ev Event
			if json.Unmarshal(line, &ev) != nil {
				continue
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// ID returns this device's identity.
func (c *Client) ID(ctx context.Context) (Identity, error) {
	var id Identity
	err := c.do(ctx, http.MethodGet, "/v0/id", nil, &id)
	return id, err
}

// Peers lists peers seen on the network and trusted ones.
func (c *Client) Peers(ctx context.Context) ([]PeerView, error) {
	var ps []PeerView
	err := c.do(ctx, http.MethodGet, "/v0/peers", nil, &ps)
	return ps, err
}

// AddPeer saves an address (HOST or HOST:PORT) where a peer may be found
// and says what answered there.
func (c *Client) AddPeer(ctx context.Context, address string) (AddedPeer, error) {
	var out AddedPeer
	err := c.do(ctx, http.MethodPost, "/v0/peers/addresses", AddPeerRequest{Address: address}, &out)
	return out, err
}

// RemovePeer forgets saved addresses: by the address, or the ID or name of
// the device last found there.
func (c *Client) RemovePeer(ctx context.Context, peer string) ([]discovery.SavedAddress, error) {
	var out []discovery.SavedAddress
	err := c.do(ctx, http.MethodDelete, "/v0/peers/addresses?peer="+url.QueryEscape(peer), nil, &out)
	return out, err
}

// PeerAddresses lists the saved addresses and what their last dials found.
func (c *Client) PeerAddresses(ctx context.Context) ([]discovery.AddressState, error) {
	var out []discovery.AddressState
	err := c.do(ctx, http.MethodGet, "/v0/peers/addresses", nil, &out)
	return out, err
}

// Trust trusts a device ID.
func (c *Client) Trust(ctx context.Context, id string, req TrustRequest) (PeerView, error) {
	var v PeerView
	err := c.do(ctx, http.MethodPost, "/v0/peers/"+url.PathEscape(id)+"/trust", req, &v)
	return v, err
}

// Untrust forgets a device ID.
func (c *Client) Untrust(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v0/peers/"+url.PathEscape(id)+"/trust", nil, nil)
}

// Send hands an app to a peer and returns when it runs there.
func (c *Client) Send(ctx context.Context, name, peer string) (migration.Result, error) {
	var res migration.Result
	err := c.do(ctx, http.MethodPost, appPath(name, "/send"), SendRequest{Peer: peer}, &res)
	return res, err
}

// BringBack asks the peer running an app handed off from here to send it back.
func (c *Client) BringBack(ctx context.Context, name string) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodPost, appPath(name, "/bring-back"), nil, &info)
	return info, err
}

// RunHere runs an app here again whose handoff's destination cannot say
// whether it took it. If it did, the app then runs on both machines.
func (c *Client) RunHere(ctx context.Context, name string) (engine.Info, error) {
	var info engine.Info
	err := c.do(ctx, http.MethodPost, appPath(name, "/run-here"), nil, &info)
	return info, err
}

// Remote lists apps handed from here to peers.
func (c *Client) Remote(ctx context.Context) ([]RemoteApp, error) {
	var rs []RemoteApp
	err := c.do(ctx, http.MethodGet, "/v0/remote", nil, &rs)
	return rs, err
}

// Requests lists incoming handoffs waiting for an answer.
func (c *Client) Requests(ctx context.Context) ([]HandoffRequest, error) {
	var rs []HandoffRequest
	err := c.do(ctx, http.MethodGet, "/v0/requests", nil, &rs)
	return rs, err
}

// Answer accepts or declines an incoming handoff.
func (c *Client) Answer(ctx context.Context, id string, accept bool) error {
	verb := "/decline"
	if accept {
		verb = "/accept"
	}
	return c.do(ctx, http.MethodPost, "/v0/requests/"+url.PathEscape(id)+verb, nil, nil)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
