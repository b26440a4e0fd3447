package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/minilambda/minilambda/runner/lambda"
)

// Hot and lambda modes keep long-lived containers per function, each
// taking one event at a time. A function's pool grows to its concurrency, or to
// function.DefaultPoolSize when it sets none; a call that finds every
// container busy then waits, up to its timeout, for one to come back (or
// for room to start one when one breaks). Containers idle past
// Options.HotIdleTTL stop, and a pool is retired when its function is
// updated or deleted: idle containers stop at once, busy ones when their
// event is answered, and calls waiting on it try the new pool. hot.started
// and hot.stopped record the containers.

// pools holds the long-lived containers of every hot or lambda function.
type pools struct {
	s *Service

	mu      sync.Mutex
	byFn    map[runKey]*pool
	stopped bool
	// wg counts containers being stopped.
	wg sync.WaitGroup
}

// pool is the containers of one version of a function.
type pool struct {
	version int
	size    int // the most containers it may have
	idle    []idleHot
	total   int // idle and busy
	retired bool
	// waiting is the calls waiting for a container, oldest first.
	waiting []chan handoff
}

// handoff is what a waiting call is given: a container, room to start
// one (counted in the pool's total already), or word that the pool was
// retired and it should ask again.
type handoff struct {
	h       engine.Hot
	start   bool
	retired bool
}

type idleHot struct {
	h     engine.Hot
	since time.Time
}

func (ps *pools) init(s *Service) {
	ps.s = s
	ps.byFn = make(map[runKey]*pool)
}

// get returns an idle container of f's pool, or starts one, or waits up
// to wait for one; warm says whether it answered events before. The
// limits keep a pool with a concurrency of its own within it, so only a
// pool of the default size waits.
func (ps *pools) get(ctx context.Context, f projections.Function, wait time.Duration) (h engine.Hot, p *pool, warm bool, err error) {
	var deadline <-chan time.Time
	for {
		ps.mu.Lock()
		k := keyOf(f)
		p = ps.byFn[k]
		if p == nil || p.version != f.Version {
			if p != nil {
				ps.retireLocked(k, p, "the function was updated")
			}
			p = &pool{version: f.Version, size: poolSize(f)}
			ps.byFn[k] = p
		}
		for n := len(p.idle); n > 0; n = len(p.idle) {
			h = p.idle[n-1].h
			p.idle = p.idle[:n-1]
			if h.Alive() {
				ps.mu.Unlock()
				return h, p, true, nil
			}
			// It exited while idle: no invocation of it failed, and none
			// shall.
			ps.stopLocked(f.ID, h, "it exited while idle")
			ps.leaveLocked(f, p)
		}
		if p.total < p.size {
			p.total++
			ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
			ps.mu.Unlock()
			return ps.start(ctx, f, p)
		}
		ch := make(chan handoff, 1)
		p.waiting = append(p.waiting, ch)
		ps.mu.Unlock()
		if deadline == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		var got handoff
		select {
		case got = <-ch:
		case <-ctx.Done():
			return nil, nil, false, ps.giveUp(f, p, ch, ctx.Err())
		case <-deadline:
			return nil, nil, false, ps.giveUp(f, p, ch, fmt.Errorf("%w: function %s has %d containers, all busy for %v",
				function.ErrBusy, f.Name, p.size, wait.Round(time.Millisecond)))
		}
		switch {
		case got.h != nil:
			return got.h, p, true, nil
		case got.start:
			return ps.start(ctx, f, p)
		}
		// Retired: ask the function's new pool.
	}
}

// start starts a container for pool p, whose total counts it already.
func (ps *pools) start(ctx context.Context, f projections.Function, p *pool) (engine.Hot, *pool, bool, error) {
	var h engine.Hot
	var err error
	switch {
	case !f.Lambda():
		h, err = ps.s.engine.StartHot(ctx, ps.s.containerSpec(f, ""))
	case ps.s.lambda == nil:
		err = errNoLambda
	default:
		h, err = ps.s.lambda.Start(ctx, ps.s.containerSpec(f, ""), lambda.Function{
			Name: f.Name, Version: f.VersionName(), MemoryMB: f.MemoryMB, Handler: f.Handler,
		})
	}
	if err != nil {
		ps.mu.Lock()
		ps.leaveLocked(f, p)
		ps.mu.Unlock()
		return nil, nil, false, err
	}
	e, err := projections.NewHotStarted(f.ID, projections.HotStarted{ContainerID: h.ID(), ImageDigest: h.ImageDigest(), FunctionVersion: f.Version})
	if err == nil {
		_, err = ps.s.log.Append(context.WithoutCancel(ctx), e)
	}
	if err != nil {
		ps.put(f, p, h, "cannot record its start")
		return nil, nil, false, err
	}
	return h, p, false, nil
}

// giveUp takes a waiting call off p's list. A handoff that raced with it
// is passed on: a container goes back, room to start one is given up.
func (ps *pools) giveUp(f projections.Function, p *pool, ch chan handoff, err error) error {
	ps.mu.Lock()
	if i := slices.Index(p.waiting, ch); i >= 0 {
		p.waiting = slices.Delete(p.waiting, i, i+1)
		ps.mu.Unlock()
		return err
	}
	ps.mu.Unlock()
	switch got := <-ch; {
	case got.h != nil:
		ps.put(f, p, got.h, "")
	case got.start:
		ps.mu.Lock()
		ps.leaveLocked(f, p)
		ps.mu.Unlock()
	}
	return err
}

// leaveLocked takes a container that is gone, or was never started, out
// of p's count, and gives its room to the oldest waiting call.
func (ps *pools) leaveLocked(f projections.Function, p *pool) {
	p.total--
	ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
	if !p.retired && !ps.stopped && len(p.waiting) > 0 {
		ch := p.waiting[0]
		p.waiting = p.waiting[1:]
		p.total++
		ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
		ch <- handoff{start: true}
	}
}

// poolSize is the most containers f's pool may have.
func poolSize(f projections.Function) int {
	if f.Concurrency > 0 {
		return f.Concurrency
	}
	return function.DefaultPoolSize
}

// put gives a container back to its pool, or stops it when broken is not
// empty (the reason) or the pool was retired.
func (ps *pools) put(f projections.Function, p *pool, h engine.Hot, broken string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if broken == "" && !p.retired && !ps.stopped {
		if len(p.waiting) > 0 {
			ch := p.waiting[0]
			p.waiting = p.waiting[1:]
			ch <- handoff{h: h}
			return
		}
		p.idle = append(p.idle, idleHot{h: h, since: time.Now()})
		return
	}
	if broken == "" {
		broken = "its pool was retired"
	}
	ps.stopLocked(f.ID, h, broken)
	ps.leaveLocked(f, p)
}

// stopLocked stops a container in the background and records why.
func (ps *pools) stopLocked(fnID string, h engine.Hot, reason string) {
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		h.Close(ps.s.life)
		e, err := projections.NewHotStopped(fnID, projections.HotStopped{ContainerID: h.ID(), Reason: reason})
		if err == nil {
			_, err = ps.s.persist(ps.s.draining, e)
		}
		if err != nil {
			ps.s.logger.Warn("cannot record a hot container's stop", "container_id", h.ID(), "err", err)
		}
	}()
}

// retireLocked stops a pool's idle containers; busy ones stop when they
// come back.
func (ps *pools) retireLocked(k runKey, p *pool, reason string) {
	p.retired = true
	for _, ih := range p.idle {
		ps.stopLocked(k.id, ih.h, reason)
	}
	p.total -= len(p.idle)
	p.idle = nil
	for _, ch := range p.waiting {
		ch <- handoff{retired: true}
	}
	p.waiting = nil
	if ps.byFn[k] == p {
		delete(ps.byFn, k)
	}
}

// retire drains a function's pool after an update or a delete.
func (ps *pools) retire(fnID, reason string, versions bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.byFn {
		if k.id == fnID && (versions || k.published == 0) {
			ps.retireLocked(k, p, reason)
		}
	}
}

// reap stops containers idle longer than the TTL.
func (ps *pools) reap(now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.byFn {
		keep := p.idle[:0]
		for _, ih := range p.idle {
			if now.Sub(ih.since) > ps.s.opts.HotIdleTTL {
				ps.stopLocked(k.id, ih.h, "idle")
				p.total--
			} else {
				keep = append(keep, ih)
			}
		}
		p.idle = keep
		if p.total == 0 {
			delete(ps.byFn, k)
		}
	}
}

// stopAll stops every idle container and makes busy ones stop when they
// come back.
func (ps *pools) stopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.stopped = true
	for k, p := range ps.byFn {
		ps.retireLocked(k, p, "the server is stopping")
	}
}
