package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/minilambda/minilambda/runner/engine"
)

// cold is the server's side of a container for one invocation: its init
// writes the event to the function's stdin, and reports the exit with
// both outputs. A prestarted one waits in its init for its event.
type cold struct {
	*link
	h       *Host
	c       engine.Detached
	res     engine.Result // what is known so far: IDs, timings
	reports chan exitFrame
	used    bool
	once    sync.Once
}

// Run runs one invocation in a fresh container, as engine.Driver's cold
// run did: input goes to the function's stdin, which is then closed; it
// is killed at timeout (counted from its start) and removed whatever
// happens. Cancelling ctx kills it.
func (h *Host) Run(ctx context.Context, s engine.Spec, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	begin := time.Now()
	defer func() { res.Timings.Total = time.Since(begin) }()
	if _, err := engine.Timeout(timeout); err != nil {
		return res, err
	}
	c, err := h.prepare(ctx, s)
	if err != nil {
		return res, err
	}
	return c.run(ctx, input, timeout, onStart)
}

// Prestart starts a container for one later invocation of s, which the
// returned engine.Prestarted's Run delivers.
func (h *Host) Prestart(ctx context.Context, s engine.Spec) (engine.Prestarted, error) {
	c, err := h.prepare(ctx, s)
	if err != nil {
		// Not a nil *cold in the interface.
		return nil, err
	}
	return c, nil
}

func (h *Host) prepare(ctx context.Context, s engine.Spec) (*cold, error) {
	l, s, err := h.open(ctx, s, modeCold)
	if err != nil {
		return nil, err
	}
	c := &cold{link: l, h: h, reports: make(chan exitFrame, 1)}
	l.frame = c.onFrame
	t := time.Now()
	_, err = h.launch(ctx, l, s, c, func(d engine.Detached) {
		c.c = d
		c.res.ContainerID, c.res.ImageDigest = d.ID(), d.ImageDigest()
	})
	c.res.Timings.Create = time.Since(t)
	if err != nil {
		return nil, err
	}
	return c, nil
}

var errHostClosed = errors.New("agent: the host is closed")

func (c *cold) onFrame(typ byte, payload []byte) {
	if typ != frameExit {
		return
	}
	x, err := parseExit(payload)
	if err != nil {
		c.h.logger.Warn("a container's init sent a bad exit report", "dir", c.dir, "err", err)
		return
	}
	select {
	case c.reports <- x:
	default:
	}
}

// Run delivers input to the prestarted container and waits as
// [Host.Run] does; the timeout counts from the delivery.
func (c *cold) Run(ctx context.Context, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	begin := time.Now()
	defer func() { res.Timings.Total = time.Since(begin) }()
	return c.run(ctx, input, timeout, onStart)
}

// Discard removes a container that will not be used.
func (c *cold) Discard(ctx context.Context) { c.Close(ctx) }

func (c *cold) run(ctx context.Context, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	defer func() {
		res = c.res
		// The answer does not wait for the removal: the host removes the
		// container, and Host.Close waits for it.
		c.h.closeLater(ctx, c)
	}()
	if c.used {
		return c.res, errors.New("agent: a prepared container serves one invocation")
	}
	c.used = true
	if timeout, err = engine.Timeout(timeout); err != nil {
		return c.res, err
	}
	// The init connects within moments of the start; the function's own
	// time counts from its event.
	t := time.Now()
	err = c.ready(ctx, t.Add(timeout), c.c.Exited())
	c.res.Timings.Start = time.Since(t)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return c.res, fmt.Errorf("runner: invocation abandoned: %w", ctx.Err())
	case errors.Is(err, errSessionEnded):
		code, _ := c.c.ExitState(ctx)
		return c.res, fmt.Errorf("agent: the container exited (code %d) before its init connected%s", code, why(c.c))
	default:
		return c.res, err
	}
	if onStart != nil {
		if err := onStart(c.c.ID(), c.c.ImageDigest()); err != nil {
			return c.res, fmt.Errorf("runner: on start: %w", err)
		}
	}
	c.res.StartedAt = time.Now()
	if err := c.send(frameEvent, input); err != nil {
		c.h.logger.Debug("send the event", "container_id", c.c.ID(), "err", err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var (
		x         exitFrame
		reported  bool
		abandoned bool
	)
	hungUp := c.ctrlDone
	for {
		select {
		case x = <-c.reports:
			reported = true
		case <-hungUp:
			if lost := c.lost(); lost != "" {
				return c.res, fmt.Errorf("agent: the container's init is out of reach: %s", lost)
			}
			// Its report came first, or its exit is on its way.
			hungUp = nil
			continue
		case <-c.c.Exited():
			// The init's last frame may be on its way still; without it, the
			// engine's word is all there is.
			late := time.NewTimer(lateFlushWait)
			select {
			case <-c.ctrlDone:
			case <-late.C:
			}
			late.Stop()
			select {
			case x = <-c.reports:
				reported = true
			default:
			}
		case <-timer.C:
			c.res.TimedOut = true
		case <-ctx.Done():
			abandoned = true
		}
		break
	}
	c.res.CompletedAt = time.Now()
	c.res.Duration = c.res.CompletedAt.Sub(c.res.StartedAt)
	c.res.Timings.Wait = c.res.Duration
	if c.res.TimedOut {
		// What the function wrote until now is in its init's hands.
		if c.send(frameKill, nil) == nil {
			late := time.NewTimer(lateFlushWait)
			select {
			case x = <-c.reports:
				reported = true
			case <-late.C:
			case <-c.c.Exited():
			}
			late.Stop()
		}
	}
	if abandoned {
		return c.res, fmt.Errorf("runner: invocation abandoned: %w", ctx.Err())
	}
	if !reported {
		t := time.Now()
		c.res.ExitCode, c.res.OOMKilled = -1, false
		if !c.res.TimedOut {
			c.res.ExitCode, c.res.OOMKilled = c.c.ExitState(ctx)
		}
		c.res.Timings.Inspect = time.Since(t)
		return c.res, nil
	}
	c.res.ExitCode, c.res.OOMKilled = x.Code, x.OOMKilled
	c.res.Stdout, c.res.StdoutTruncated = x.stdout, x.StdoutDropped > 0
	c.res.Stderr, c.res.StderrTruncated = x.logs, x.Dropped > 0
	if x.Error != "" {
		// The entrypoint could not run: the function's failure, said
		// where its logs go.
		c.res.Stderr = append(c.res.Stderr, x.Error+"\n"...)
	}
	if c.res.StdoutTruncated || c.res.StderrTruncated {
		c.res.OutputLimited = true
	}
	return c.res, nil
}

// Close kills and removes the container and its socket.
func (c *cold) Close(ctx context.Context) {
	c.once.Do(func() {
		if c.c != nil {
			c.c.Close(ctx)
		}
		c.release()
		c.h.forget(c)
	})
}
