package runner

import (
	"sync"
	"time"

	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// A cold function that was used recently keeps one spare: a fresh
// container already created, attached and started, blocked on its stdin,
// for exactly one next invocation. It takes the engine's create and start
// (most of a cold invocation) off that invocation's path; the function's
// process starts before its event arrives, as in Lambda's init phase. A
// spare is dropped when its function changes and after Options.HotIdleTTL
// unused.

// spares holds at most one prestarted container per function.
type spares struct {
	s *Service

	mu        sync.Mutex
	byFn      map[string]*spare // by function id
	preparing map[string]bool   // functions whose spare is on its way
	stopped   bool
	// wg counts spares being prepared or discarded.
	wg sync.WaitGroup
}

type spare struct {
	version int
	p       engine.Prestarted
	since   time.Time
}

func (sp *spares) init(s *Service) {
	sp.s = s
	sp.byFn = make(map[string]*spare)
	sp.preparing = make(map[string]bool)
}

// take returns f's spare when it has one of f's version.
func (sp *spares) take(f projections.Function) engine.Prestarted {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	s := sp.byFn[f.ID]
	if s == nil || s.version != f.Version {
		return nil
	}
	delete(sp.byFn, f.ID)
	return s.p
}

// prestart prepares a spare for f in the background, unless it has one or
// one is on its way, or f is no longer the function's live version.
func (sp *spares) prestart(f projections.Function) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stopped || sp.preparing[f.ID] {
		return
	}
	if cur, err := sp.s.views.Function(f.ID); err != nil || cur.Version != f.Version {
		return
	}
	if s := sp.byFn[f.ID]; s != nil && s.version == f.Version {
		return
	}
	sp.preparing[f.ID] = true
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		p, err := sp.s.engine.Prestart(sp.s.life, sp.s.containerSpec(f, ""))
		sp.mu.Lock()
		defer sp.mu.Unlock()
		delete(sp.preparing, f.ID)
		if err != nil {
			sp.s.logger.Debug("cannot prestart a container", "function", f.Name, "err", err)
			return
		}
		// The function may have changed or gone while the spare started: a
		// spare never outlives its function's version.
		if cur, err := sp.s.views.Function(f.ID); sp.stopped || err != nil || cur.Version != f.Version {
			sp.discardLocked(p)
			return
		}
		if old := sp.byFn[f.ID]; old != nil {
			sp.discardLocked(old.p)
		}
		sp.byFn[f.ID] = &spare{version: f.Version, p: p, since: time.Now()}
	}()
}

// discard removes a spare in the background.
func (sp *spares) discard(p engine.Prestarted) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.discardLocked(p)
}

func (sp *spares) discardLocked(p engine.Prestarted) {
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		p.Discard(sp.s.life)
	}()
}

// drop discards f's spare, after an update or a delete.
func (sp *spares) drop(fnID string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.dropLocked(fnID)
}

func (sp *spares) dropLocked(fnID string) {
	if s := sp.byFn[fnID]; s != nil {
		delete(sp.byFn, fnID)
		sp.discardLocked(s.p)
	}
}

// reap discards spares unused for longer than the TTL.
func (sp *spares) reap(now time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for fnID, s := range sp.byFn {
		if now.Sub(s.since) > sp.s.opts.HotIdleTTL {
			sp.dropLocked(fnID)
		}
	}
}

// stopAll discards every spare and prepares no more.
func (sp *spares) stopAll() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.stopped = true
	for fnID := range sp.byFn {
		sp.dropLocked(fnID)
	}
}
