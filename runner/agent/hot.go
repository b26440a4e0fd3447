package agent

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/minilambda/minilambda/runner/engine"
)

// hot is the server's side of a hot container: events go to its init as
// frames, which writes each as one line to the function's stdin, and its
// result lines come back with the logs written before each.
type hot struct {
	*link
	h       *Host
	c       engine.Detached
	replies chan reply    // the init's result lines; never more than one waits
	extra   chan struct{} // closed when a line came with none asked for
	dead    chan struct{} // closed once the init has reported the exit, or the container ended

	mu     sync.Mutex // one event in flight
	broken bool

	endMu     sync.Mutex
	end       *exitFrame
	extraOnce sync.Once
	deadOnce  sync.Once
	closeOnce sync.Once
}

// StartHot starts a hot container for s: its init holds the function's
// pipes and speaks the line protocol to it.
func (h *Host) StartHot(ctx context.Context, s engine.Spec) (engine.Hot, error) {
	l, s, err := h.open(ctx, s, modeHot)
	if err != nil {
		return nil, err
	}
	c := &hot{link: l, h: h, replies: make(chan reply, 1), extra: make(chan struct{}), dead: make(chan struct{})}
	l.frame = c.onFrame
	d, err := h.launch(ctx, l, s, c, func(d engine.Detached) { c.c = d })
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case <-d.Exited():
		case <-l.ctrlDone:
		}
		c.markDead()
	}()
	if err := h.connected(ctx, l, d, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *hot) onFrame(typ byte, payload []byte) {
	switch typ {
	case frameReply:
		r, err := parseReply(payload)
		if err != nil {
			c.h.logger.Warn("a hot container's init sent a bad result", "dir", c.dir, "err", err)
			c.extraOnce.Do(func() { close(c.extra) })
			return
		}
		select {
		case c.replies <- r:
		default:
			// A second line for one event: every later answer would go to
			// the wrong event.
			c.extraOnce.Do(func() { close(c.extra) })
		}
	case frameExit:
		x, err := parseExit(payload)
		if err == nil {
			c.endMu.Lock()
			c.end = &x
			c.endMu.Unlock()
		}
		c.markDead()
	}
}

func (c *hot) markDead() { c.deadOnce.Do(func() { close(c.dead) }) }

func (c *hot) ID() string          { return c.c.ID() }
func (c *hot) ImageDigest() string { return c.c.ImageDigest() }

// Alive reports whether the container may take an event.
func (c *hot) Alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// Do sends one event and waits up to timeout for its result line; see
// engine.Hot.
func (c *hot) Do(ctx context.Context, _ string, event []byte, timeout time.Duration, onStart engine.OnStart) (engine.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, digest := c.c.ID(), c.c.ImageDigest()
	res := engine.Result{ContainerID: id, ImageDigest: digest, StartedAt: time.Now()}
	deadline := res.StartedAt.Add(timeout)
	if c.broken {
		return res, fmt.Errorf("%w: used after it broke", engine.ErrHotBroken)
	}
	if bytes.ContainsRune(event, '\n') {
		return res, fmt.Errorf("%w: an event for a hot container must be one line", engine.ErrInvalidSpec)
	}
	if !c.Alive() {
		c.broken = true
		return res, fmt.Errorf("%w: it exited while idle", engine.ErrHotStale)
	}
	if err := c.ready(ctx, deadline, c.dead); err != nil {
		c.broken = true
		if err == errSessionEnded {
			return res, fmt.Errorf("%w: it exited before its init connected%s", engine.ErrHotStale, why(c.c))
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("runner: hot invocation abandoned: %w", ctx.Err())
		}
		if err := onStart(id, digest); err != nil {
			return res, err
		}
		res.TimedOut = true
		finish(&res, time.Now())
		return res, fmt.Errorf("%w: %v within %v", engine.ErrHotBroken, err, timeout)
	}
	select {
	case <-c.extra:
		c.broken = true
		return res, fmt.Errorf("%w: it wrote a result line with no event in flight", engine.ErrHotBroken)
	case <-c.replies:
		c.broken = true
		return res, fmt.Errorf("%w: it wrote a result line with no event in flight", engine.ErrHotBroken)
	default:
	}
	if err := onStart(id, digest); err != nil {
		return res, err
	}
	res.StartedAt = time.Now()
	if err := c.send(frameEvent, event); err != nil {
		c.broken = true
		finish(&res, time.Now())
		c.exitState(ctx, &res)
		return res, fmt.Errorf("%w: writing the event: %v", engine.ErrHotBroken, err)
	}
	// The timeout counts from the event, as the function sees it.
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-c.replies:
		finish(&res, time.Now())
		res.Stderr, res.StderrTruncated = r.logs, r.dropped > 0
		if r.overLimit {
			c.broken = true
			res.OutputLimited, res.StdoutTruncated = true, true
			return res, fmt.Errorf("%w: result line longer than %d bytes", engine.ErrHotBroken, c.limit)
		}
		res.Stdout = r.line
		return res, nil
	case <-c.extra:
		c.broken = true
		finish(&res, time.Now())
		return res, fmt.Errorf("%w: it broke the line protocol", engine.ErrHotBroken)
	case <-c.dead:
		c.broken = true
		finish(&res, time.Now())
		if lost := c.lost(); lost != "" {
			res.ExitCode = -1
			return res, fmt.Errorf("%w: %s", engine.ErrHotBroken, lost)
		}
		c.exitState(ctx, &res)
		return res, fmt.Errorf("%w: the container exited", engine.ErrHotBroken)
	case <-timer.C:
		c.broken = true
		finish(&res, time.Now())
		res.TimedOut = true
		c.lateLogs(ctx, &res)
		return res, fmt.Errorf("%w: no result line within %v", engine.ErrHotBroken, timeout)
	case <-ctx.Done():
		c.broken = true
		finish(&res, time.Now())
		return res, fmt.Errorf("runner: hot invocation abandoned: %w", ctx.Err())
	}
}

// exitState fills in how the function ended: from the init's report, or,
// when the init did not make one, from the engine's word on the
// container, each waited for a little.
func (c *hot) exitState(ctx context.Context, res *engine.Result) {
	wait := time.NewTimer(exitWait)
	defer wait.Stop()
	// The init's report comes before its connection ends; without one,
	// the engine's word comes with the exit.
	select {
	case <-c.ctrlDone:
	case <-c.c.Exited():
	case <-wait.C:
	case <-ctx.Done():
	}
	c.endMu.Lock()
	end := c.end
	c.endMu.Unlock()
	switch {
	case end != nil:
		res.ExitCode, res.OOMKilled = end.Code, end.OOMKilled
		res.Stderr, res.StderrTruncated = end.logs, end.Dropped > 0
	case isClosed(c.c.Exited()):
		res.ExitCode, res.OOMKilled = c.c.ExitState(ctx)
	}
	if res.ExitCode == 0 {
		// It left without answering, or nobody could tell how: that is
		// the function's failure even if it exited 0.
		res.ExitCode = -1
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// lateLogs has the init kill a function past its deadline, and takes the
// logs it wrote until then from the init's exit report, waiting at most
// lateFlushWait.
func (c *hot) lateLogs(ctx context.Context, res *engine.Result) {
	if c.send(frameKill, nil) != nil {
		return
	}
	t := time.NewTimer(lateFlushWait)
	defer t.Stop()
	select {
	case <-c.ctrlDone:
	case <-t.C:
		return
	case <-ctx.Done():
		return
	}
	c.endMu.Lock()
	defer c.endMu.Unlock()
	if c.end != nil {
		res.Stderr, res.StderrTruncated = c.end.logs, c.end.Dropped > 0
	}
}

// Close kills and removes the container and its socket; it is safe to
// call more than once.
func (c *hot) Close(ctx context.Context) {
	c.closeOnce.Do(func() {
		c.markDead()
		if c.c != nil {
			c.c.Close(ctx)
		}
		c.release()
		c.h.forget(c)
	})
}
