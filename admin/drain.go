package admin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// POST /v1/cluster/drain: a planned stop of the node that serves the
// request (node/drain.go has the steps). The answer streams the drain's
// progress as text/plain, one line per step or measurement, as it
// happens; the last line is either
//
//	drained: SUMMARY     the node has left the cluster; its process exits 0
//	error: MESSAGE       the drain stopped (MESSAGE says what to do); unless
//	                     the message says otherwise, the node is back in service
//
// A drain refused before it begins is a 409 with a JSON error (e.g. the
// node is the last one able to hold an address: start another node, or
// drain with force). A second request while a drain runs follows the
// running one: it gets the lines so far, then the rest. The drain goes on
// if the client goes away; request it again to follow it.

// Drain defaults and bounds.
const (
	DefaultDrainTimeout = 2 * time.Minute
	minDrainTimeout     = time.Second
	maxDrainTimeout     = time.Hour
)

// drainedPrefix begins the final line of a drain's progress stream
// (progress.go) when the node has left the cluster.
const drainedPrefix = "drained: "

// DrainRequest is the body of POST /v1/cluster/drain (it may be empty).
type DrainRequest struct {
	// Timeout bounds the drain up to leaving the cluster: moving the
	// addresses, handing over leadership and waiting for ringing calls,
	// as a Go duration ("2m", the default; 1s to 1h).
	Timeout string `json:"timeout,omitempty"`
	// Force drains even when it stops the service (the last node able to
	// hold an address, the cluster's quorum) and goes on when a step
	// fails or times out.
	Force bool `json:"force,omitempty"`
}

// DrainOptions are a validated DrainRequest.
type DrainOptions struct {
	Timeout time.Duration
	Force   bool
}

// DrainRun is a drain in progress.
type DrainRun interface {
	// Follow calls line with every progress line of the drain, from the
	// first, as they come, until the drain ends or ctx does. It returns
	// the drain's summary, or the error that stopped it.
	Follow(ctx context.Context, line func(string)) (summary string, err error)
}

// Drainer is the part of the Backend that drains the node. A backend
// without it answers 501.
type Drainer interface {
	// Drain starts a drain, or returns the one running (joined true). A
	// *DrainRefused error means it was refused before anything changed.
	Drain(opts DrainOptions) (run DrainRun, joined bool, err error)
}

// DrainRefused is a drain refused before it began, with what to do.
type DrainRefused struct{ Msg string }

func (e *DrainRefused) Error() string { return e.Msg }

func (r DrainRequest) options() (DrainOptions, error) {
	o := DrainOptions{Timeout: DefaultDrainTimeout, Force: r.Force}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil {
			return o, badRequest("timeout", "%q is not a duration such as 2m or 90s", r.Timeout)
		}
		if d < minDrainTimeout || d > maxDrainTimeout {
			return o, badRequest("timeout", "%s: between %s and %s", d, minDrainTimeout, maxDrainTimeout)
		}
		o.Timeout = d
	}
	return o, nil
}

// noDrainer is the 501 answer of a backend that is not a Drainer.
const noDrainer = "this node cannot be drained"

func (s *Server) drain(w http.ResponseWriter, r *http.Request, dr Drainer) error {
	var in DrainRequest
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return err
		}
	}
	opts, err := in.options()
	if err != nil {
		return err
	}
	// The request is read; the answer follows the drain, which waits for
	// calls up to its timeout (an hour at most) and may be followed by
	// clients that come and go: no connection timeouts from here.
	liftDeadlines(w)
	run, joined, err := dr.Drain(opts)
	if err != nil {
		var refused *DrainRefused
		if errors.As(err, &refused) {
			return &httpError{status: http.StatusConflict, body: Error{Error: refused.Msg}}
		}
		return err
	}
	if joined {
		s.cfg.Logger.Info("drain requested while one runs: following it", "remote", r.RemoteAddr, "token", TokenName(r.Context()))
	} else {
		s.cfg.Logger.Info("drain requested", "remote", r.RemoteAddr, "token", TokenName(r.Context()), "timeout", opts.Timeout, "force", opts.Force)
	}
	write := startProgress(w)
	if joined {
		write("already draining: following the drain in progress (its timeout and force apply, not this request's)")
	}
	summary, err := run.Follow(r.Context(), write)
	switch {
	case r.Context().Err() != nil:
		s.cfg.Logger.Info("drain client went away; the drain goes on", "remote", r.RemoteAddr)
	case err != nil:
		write(progressErrorPrefix + err.Error())
	default:
		write(drainedPrefix + summary)
	}
	return nil
}

// drainProgress reads a drain's progress stream.
var drainProgress = progressStream{
	what:       "drain",
	donePrefix: drainedPrefix,
	stopped:    func(msg string) error { return &DrainError{Msg: msg} },
	leftHint:   "it goes on on the node: run drain again to follow it",
	cutHint:    "the node may have stopped; check `troika cluster status` on another node",
}

// DrainError is a drain that stopped; Msg is the node's message.
type DrainError struct{ Msg string }

func (e *DrainError) Error() string { return e.Msg }

// Drain asks the node for a planned stop and calls line with each progress
// line as it arrives. It returns the summary once the node has left the
// cluster (its process then exits), a *DrainError when the drain stopped,
// or an *APIError when it was refused. Only ctx bounds it.
func (c *Client) Drain(ctx context.Context, in DrainRequest, line func(string)) (string, error) {
	resp, err := c.stream(ctx, http.MethodPost, "/v1/cluster/drain", in) // a drain waits for calls: ctx bounds it
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return drainProgress.follow(ctx, resp.Body, line)
}
