package runner

import (
	"context"
	"sync"
	"time"

	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// Hot mode keeps long-lived containers per function, each taking one
// event at a time over the line protocol. A function's pool grows to its
// concurrency, shrinks when containers idle past Options.HotIdleTTL, and is
// retired when the function is updated or deleted: idle containers stop at
// once, busy ones when their event is answered. hot.started and
// hot.stopped record the containers.

// pools holds the hot containers of every hot function.
type pools struct {
	s *Service

	mu      sync.Mutex
	byFn    map[string]*pool // by function id
	stopped bool
	// wg counts containers being stopped.
	wg sync.WaitGroup
}

// pool is the containers of one version of a function.
type pool struct {
	version int
	idle    []idleHot
	total   int // idle and busy
	retired bool
}

type idleHot struct {
	h     engine.Hot
	since time.Time
}

func (ps *pools) init(s *Service) {
	ps.s = s
	ps.byFn = make(map[string]*pool)
}

// get returns an idle container of f's pool, or starts one; warm says
// which. The limits keep the pool within f's concurrency.
func (ps *pools) get(ctx context.Context, f projections.Function) (h engine.Hot, p *pool, warm bool, err error) {
	ps.mu.Lock()
	p = ps.byFn[f.ID]
	if p == nil || p.version != f.Version {
		if p != nil {
			ps.retireLocked(f.ID, p, "the function was updated")
		}
		p = &pool{version: f.Version}
		ps.byFn[f.ID] = p
	}
	if n := len(p.idle); n > 0 {
		h = p.idle[n-1].h
		p.idle = p.idle[:n-1]
		ps.mu.Unlock()
		return h, p, true, nil
	}
	p.total++
	ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
	ps.mu.Unlock()
	h, err = ps.s.engine.StartHot(ctx, ps.s.containerSpec(f, ""))
	if err != nil {
		ps.mu.Lock()
		p.total--
		ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
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

// put gives a container back to its pool, or stops it when broken is not
// empty (the reason) or the pool was retired.
func (ps *pools) put(f projections.Function, p *pool, h engine.Hot, broken string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if broken == "" && !p.retired && !ps.stopped {
		p.idle = append(p.idle, idleHot{h: h, since: time.Now()})
		return
	}
	p.total--
	ps.s.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
	if broken == "" {
		broken = "its pool was retired"
	}
	ps.stopLocked(f.ID, h, broken)
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
func (ps *pools) retireLocked(fnID string, p *pool, reason string) {
	p.retired = true
	for _, ih := range p.idle {
		ps.stopLocked(fnID, ih.h, reason)
	}
	p.total -= len(p.idle)
	p.idle = nil
	if ps.byFn[fnID] == p {
		delete(ps.byFn, fnID)
	}
}

// retire drains a function's pool after an update or a delete.
func (ps *pools) retire(fnID, reason string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.byFn[fnID]; p != nil {
		ps.retireLocked(fnID, p, reason)
	}
}

// reap stops containers idle longer than the TTL.
func (ps *pools) reap(now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for fnID, p := range ps.byFn {
		keep := p.idle[:0]
		for _, ih := range p.idle {
			if now.Sub(ih.since) > ps.s.opts.HotIdleTTL {
				ps.stopLocked(fnID, ih.h, "idle")
				p.total--
			} else {
				keep = append(keep, ih)
			}
		}
		p.idle = keep
		if p.total == 0 {
			delete(ps.byFn, fnID)
		}
	}
}

// stopAll stops every idle container and makes busy ones stop when they
// come back.
func (ps *pools) stopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.stopped = true
	for fnID, p := range ps.byFn {
		ps.retireLocked(fnID, p, "the server is stopping")
	}
}
