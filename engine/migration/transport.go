package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Peer is how the sender reaches the destination's handoff endpoint.
type Peer struct {
	HTTP *http.Client
	Base string // e.g. https://192.0.2.2:7466/peer/v1/handoff
	Name string // for messages
	// ID is the destination device's ID, which the journal keeps: a
	// handoff whose outcome is unknown is resolved with the same device,
	// wherever it is by then (Sender.Reach).
	ID string
}

// AnsweredError is a peer's answer that says no: the request reached it,
// and it said why it did not do it. An error that is not one may mean the
// peer did it and the answer was lost.
type AnsweredError struct {
	Peer, Path string
	Status     int
	Refusal
}

func (e *AnsweredError) Error() string { return fmt.Sprintf("%s: %s", e.Peer, e.Refusal.Error) }

// RefusedError is a destination's refusal, before anything was frozen.
type RefusedError struct {
	Peer string
	Refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s refused the handoff: %s", e.Peer, e.Refusal.Error)
}

// call sends a JSON request and decodes a JSON answer, within CallTimeout
// (OfferTimeout for the offer).
func (p Peer) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return p.exchange(ctx, method, path, body, out)
}

// exchange sends body as it is and decodes a JSON answer into out.
func (p Peer) exchange(ctx context.Context, method, path string, body []byte, out any) error {
	limit := CallTimeout
	if path == "/offer" {
		limit = OfferTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	resp, err := p.do(ctx, method, path, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s: bad answer to %s: %w", p.Name, path, err)
	}
	return nil
}

// Time limits. A link that dies without a reset would otherwise hold a
// frozen app for as long as TCP takes to give up.
const (
	// StallTimeout ends a transfer in which no byte moved for this long.
	StallTimeout = 15 * time.Second
	// OfferTimeout bounds the offer, which may wait for the other user.
	OfferTimeout = 3 * time.Minute
	// CallTimeout bounds every other request/answer exchange.
	CallTimeout = 60 * time.Second
)

// stream sends a body of unknown length, giving up when it stalls.
func (p Peer) stream(ctx context.Context, method, path string, body io.Reader) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(StallTimeout, func() {
		cancel(fmt.Errorf("the transfer to %s stalled for %v (link down?)", p.Name, StallTimeout))
	})
	defer stall.Stop()
	resp, err := p.do(ctx, method, path, &watchdog{r: body, t: stall})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return cause
		}
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// watchdog pushes a timer back every time bytes move.
type watchdog struct {
	r io.Reader
	t *time.Timer
}

func (w *watchdog) Read(b []byte) (int, error) {
	n, err := w.r.Read(b)
	if n > 0 {
		w.t.Reset(StallTimeout)
	}
	return n, err
}

func (p Peer) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.Base+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("lost the connection to %s: %w", p.Name, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var r Refusal
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &r) != nil || r.Error == "" {
			r.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		if path == "/offer" && resp.StatusCode == http.StatusForbidden && r.Code == "" {
			r.Code = RefusedNotTrusted // the peer channel's own refusal
		}
		if r.Code != "" && path == "/offer" {
			return nil, &RefusedError{Peer: p.Name, Refusal: r}
		}
		return nil, &AnsweredError{Peer: p.Name, Path: path, Status: resp.StatusCode, Refusal: r}
	}
	return resp, nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
	last   time.Time
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.report != nil && (time.Since(c.last) > 100*time.Millisecond || errors.Is(err, io.EOF)) {
		c.last = time.Now()
		c.report(c.n)
	}
	return n, err
}
