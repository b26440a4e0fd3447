package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

// Hot and lambda modes keep long-lived containers per function, each
// taking one event at a time. A call that finds no idle container waits
// for whichever comes first: one another call gives back, or one the pool
// starts. The pool starts containers in the background, at most
// maxPoolStarts at a time, while more calls wait than starts are under
// way, up to the function's concurrency (function.DefaultPoolSize when it
// sets none): a call never waits for the start it asked for when another
// container frees sooner. A start that fails fails the oldest waiting
// call with its error. A call gives up after its timeout, unless a start
// is still under way that it may have. Containers idle past
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
	name     string // the function's, for the metric
	version  int
	size     int // the most containers it may have
	idle     []idleHot
	total    int // idle, busy and starting
	starting int
	retired  bool
	// waiting is the calls waiting for a container, oldest first.
	waiting []chan handoff
}

// maxPoolStarts is how many containers a pool starts at once: the engine
// serialises much of a start, and a call takes whichever container is
// ready first anyway.
const maxPoolStarts = 2

// poolStartWait bounds one container's start by the engine.
const poolStartWait = agent.StartWait

// handoff is what a waiting call is given: a container (fresh when it was
// just started), the error of a start that failed, or word that the pool
// was retired and it should ask again.
type handoff struct {
	h       engine.Hot
	fresh   bool
	err     error
	retired bool
}

type idleHot struct {
	h     engine.Hot
	since time.Time
	fresh bool // started for calls that had gone, never used
}

func (ps *pools) init(s *Service) {
	ps.s = s
	ps.byFn = make(map[runKey]*pool)
}

// get returns an idle container of f's pool, or waits up to wait for the
// first one freed or started for the calls waiting (see growLocked); warm
// says whether it answered events before. The limits keep a pool with a
// concurrency of its own within it, so only a pool of the default size
// waits.
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
			p = &pool{name: f.Name, version: f.Version, size: poolSize(f)}
			ps.byFn[k] = p
		}
		for n := len(p.idle); n > 0; n = len(p.idle) {
			ih := p.idle[n-1]
			h = ih.h
			p.idle = p.idle[:n-1]
			if h.Alive() {
				ps.mu.Unlock()
				return h, p, !ih.fresh, nil
			}
			// It exited while idle: no invocation of it failed, and none
			// shall.
			ps.stopLocked(f.ID, h, "it exited while idle")
			ps.leaveLocked(f, p)
		}
		ch := make(chan handoff, 1)
		p.waiting = append(p.waiting, ch)
		ps.growLocked(f, p)
		ps.mu.Unlock()
		if deadline == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		var got handoff
	waiting:
		for {
			select {
			case got = <-ch:
				break waiting
			case <-ctx.Done():
				return nil, nil, false, ps.giveUp(f, p, ch, ctx.Err())
			case <-deadline:
				// A start under way may be this call's yet: a slow engine
				// is not a busy function.
				ps.mu.Lock()
				starting := p.starting > 0
				ps.mu.Unlock()
				if starting {
					deadline = time.After(wait)
					continue
				}
				return nil, nil, false, ps.giveUp(f, p, ch, fmt.Errorf("%w: function %s has %d containers, all busy for %v",
					function.ErrBusy, f.Name, p.size, wait.Round(time.Millisecond)))
			}
		}
		switch {
		case got.err != nil:
			return nil, nil, false, got.err
		case got.h != nil:
			return got.h, p, !got.fresh, nil
		}
		// Retired: ask the function's new pool.
	}
}

// growLocked starts containers for p in the background while more calls
// wait than starts are under way, within the pool's size.
func (ps *pools) growLocked(f projections.Function, p *pool) {
	for !p.retired && !ps.stopped && p.total < p.size && p.starting < maxPoolStarts && len(p.waiting) > p.starting {
		p.starting++
		ps.countLocked(p, 1)
		ps.wg.Add(1)
		go ps.start(f, p)
	}
}

// start starts a container for pool p, whose total and starting count it
// already, and gives it to the oldest waiting call, or to the idle ones.
func (ps *pools) start(f projections.Function, p *pool) {
	defer ps.wg.Done()
	// The start is the pool's, not a call's: a call that gives up leaves
	// it to the next, and calls still waiting while the server drains may
	// have it.
	ctx, cancel := context.WithTimeout(ps.s.life, poolStartWait)
	defer cancel()
	var h engine.Hot
	var err error
	switch {
	case !f.Lambda():
		h, err = ps.s.agent.StartHot(ctx, ps.s.containerSpec(f, ""))
	default:
		h, err = ps.s.agent.StartLambda(ctx, ps.s.containerSpec(f, ""), agent.Function{
			Name: f.Name, Version: f.VersionName(), MemoryMB: f.MemoryMB, Handler: f.Handler,
		})
	}
	if err == nil {
		var e eventlog.Event
		e, err = projections.NewHotStarted(f.ID, projections.HotStarted{ContainerID: h.ID(), ImageDigest: h.ImageDigest(), FunctionVersion: f.Version})
		if err == nil {
			_, err = ps.s.log.Append(ctx, e)
		}
		if err != nil {
			ps.mu.Lock()
			ps.stopLocked(f.ID, h, "cannot record its start")
			ps.mu.Unlock()
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p.starting--
	if err == nil {
		ps.putLocked(f, p, h, "", true)
		ps.growLocked(f, p)
		return
	}
	ps.countLocked(p, -1)
	if len(p.waiting) > 0 {
		ch := p.waiting[0]
		p.waiting = p.waiting[1:]
		ch <- handoff{err: err}
	} else if !ps.stopped && !p.retired {
		ps.s.logger.Warn("cannot start a container", "function", f.Name, "err", err)
	}
	ps.growLocked(f, p)
}

// giveUp takes a waiting call off p's list. A container handed to it
// meanwhile goes back to the pool.
func (ps *pools) giveUp(f projections.Function, p *pool, ch chan handoff, err error) error {
	ps.mu.Lock()
	if i := slices.Index(p.waiting, ch); i >= 0 {
		p.waiting = slices.Delete(p.waiting, i, i+1)
		ps.mu.Unlock()
		return err
	}
	ps.mu.Unlock()
	if got := <-ch; got.h != nil {
		ps.put(f, p, got.h, "")
	}
	return err
}

// leaveLocked takes a container that is gone out of p's count, and starts
// another when calls wait.
func (ps *pools) leaveLocked(f projections.Function, p *pool) {
	ps.countLocked(p, -1)
	ps.growLocked(f, p)
}

// countLocked changes p's total by n, and the metric that shows it.
func (ps *pools) countLocked(p *pool, n int) {
	p.total += n
	ps.s.metrics.HotContainers.WithLabelValues(p.name).Set(float64(p.total))
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
	ps.putLocked(f, p, h, broken, false)
}

// putLocked is put; fresh says h was just started and never answered.
func (ps *pools) putLocked(f projections.Function, p *pool, h engine.Hot, broken string, fresh bool) {
	if broken == "" && !p.retired && !ps.stopped {
		if len(p.waiting) > 0 {
			ch := p.waiting[0]
			p.waiting = p.waiting[1:]
			ch <- handoff{h: h, fresh: fresh}
			return
		}
		p.idle = append(p.idle, idleHot{h: h, since: time.Now(), fresh: fresh})
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
	ps.countLocked(p, -len(p.idle))
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
				ps.countLocked(p, -1)
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
