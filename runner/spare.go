package runner

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// A cold function that was used recently keeps spares: fresh containers
// already created, attached and started, blocked on their stdin, each for
// exactly one next invocation. A spare takes the engine's create and start
// (most of a cold invocation) off that invocation's path; the function's
// process starts before its event arrives, as in Lambda's init phase.
//
// The spares stay ahead of demand: when an invocation takes one, the next
// is started at once, and a function keeps as many as its recent arrivals
// need while one starts (the arrival rate over the last spareWindow times
// how long a start takes), at least one, at most maxSpares. An engine
// starts containers barely faster side by side than one after another, so
// a function starts one at a time, and an invocation that finds none ready
// but one starting waits for it rather than asking the engine for yet
// another container. Spares are dropped when their function
// changes and after Options.HotIdleTTL unused.

// Bounds of a function's spares.
const (
	maxSpares = 4
	// maxStarting is how many spares of a function start at once: an
	// engine starts containers partly in parallel (six `docker run` at once
	// take about 0.75 of the time of six in a row on two cores), no more.
	maxStarting = 1
	spareWindow = 10 * time.Second
	// spareWaitMax bounds an invocation's wait for a spare that is
	// starting; past it, the invocation starts its own container.
	spareWaitMax = 5 * time.Second
)

// spares holds the prestarted containers of every cold function.
type spares struct {
	s *Service

	mu      sync.Mutex
	byFn    map[runKey]*fnSpares
	stopped bool
	// wg counts spares being prepared or discarded.
	wg sync.WaitGroup
}

// fnSpares is one function version's spares, and what sizes them.
type fnSpares struct {
	version  int
	ready    []spare // oldest first
	starting int     // spares being started, at most maxStarting
	// waiting is the invocations waiting for a spare that is starting,
	// oldest first; nil is sent when none could be started.
	waiting  []chan engine.Prestarted
	arrivals []time.Time // recent invocations, oldest first
	start    time.Duration
}

type spare struct {
	p     engine.Prestarted
	since time.Time
}

func (sp *spares) init(s *Service) {
	sp.s = s
	sp.byFn = make(map[runKey]*fnSpares)
}

// forLocked returns f's spares, dropping those of another version.
func (sp *spares) forLocked(f projections.Function) *fnSpares {
	k := keyOf(f)
	fs := sp.byFn[k]
	if fs != nil && fs.version == f.Version {
		return fs
	}
	if fs != nil {
		sp.dropLocked(k)
	}
	fs = &fnSpares{version: f.Version}
	sp.byFn[k] = fs
	return fs
}

// take returns a spare of f for an invocation: a ready one, or the one
// starting, once it is ready. nil means the invocation starts its own
// container. Either way a replacement is on its way, or follows when the
// invocation ends.
func (sp *spares) take(ctx context.Context, f projections.Function) engine.Prestarted {
	sp.mu.Lock()
	if sp.stopped {
		sp.mu.Unlock()
		return nil
	}
	fs := sp.forLocked(f)
	now := time.Now()
	// A call that came within a start time of the previous one gets the
	// replacement started now, ahead of the next; otherwise the replacement
	// starts when the call ends (its container is done): a start beside the call's run
	// on the same engine made that run take twice as long.
	pressed := len(fs.arrivals) > 0 && now.Sub(fs.arrivals[len(fs.arrivals)-1]) < fs.startTime()
	fs.arrivals = append(fs.arrivals, now)
	if i := slices.IndexFunc(fs.arrivals, func(t time.Time) bool { return now.Sub(t) <= spareWindow }); i > 0 {
		fs.arrivals = slices.Delete(fs.arrivals, 0, i)
	}
	if len(fs.ready) > 0 {
		p := fs.ready[0].p
		fs.ready = slices.Delete(fs.ready, 0, 1)
		if pressed {
			sp.fillLocked(f, fs)
		}
		sp.mu.Unlock()
		return p
	}
	if fs.starting == 0 {
		sp.fillLocked(f, fs)
		sp.mu.Unlock()
		return nil
	}
	ch := make(chan engine.Prestarted, 1)
	fs.waiting = append(fs.waiting, ch)
	sp.fillLocked(f, fs)
	sp.mu.Unlock()
	t := time.NewTimer(spareWaitMax)
	defer t.Stop()
	select {
	case p := <-ch:
		return p
	case <-ctx.Done():
	case <-t.C:
	}
	sp.mu.Lock()
	if i := slices.Index(fs.waiting, ch); i >= 0 {
		fs.waiting = slices.Delete(fs.waiting, i, i+1)
		sp.mu.Unlock()
		return nil
	}
	sp.mu.Unlock()
	// Handed over as the wait ended: it is this invocation's anyway, unless
	// the invocation is gone.
	p := <-ch
	if p != nil && ctx.Err() != nil {
		sp.discard(p)
		return nil
	}
	return p
}

// target is how many spares a function keeps: enough for the arrivals
// expected while one starts.
func (fs *fnSpares) target() int {
	start := fs.startTime()
	n := len(fs.arrivals)
	if n == 0 {
		return 1
	}
	window := min(spareWindow, time.Since(fs.arrivals[0]))
	if window < start {
		window = start
	}
	rate := float64(n) / window.Seconds()
	return min(maxSpares, max(1, int(math.Ceil(rate*start.Seconds()))))
}

// startTime is how long a spare takes to start, as measured so far.
func (fs *fnSpares) startTime() time.Duration {
	if fs.start == 0 {
		return 300 * time.Millisecond
	}
	return fs.start
}

// prestart keeps f's spares filled after an invocation of f, unless f is
// no longer the function's live version.
func (sp *spares) prestart(f projections.Function) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stopped {
		return
	}
	sp.fillLocked(f, sp.forLocked(f))
}

// fillLocked starts a spare for f when it has fewer ready or starting
// than it needs, or more invocations wait than spares start, within
// maxStarting.
func (sp *spares) fillLocked(f projections.Function, fs *fnSpares) {
	if sp.stopped || fs.starting >= maxStarting {
		return
	}
	// Invocations waiting beyond the spares already starting need another
	// whatever the target says.
	if len(fs.waiting) <= fs.starting && len(fs.ready)+fs.starting >= fs.target() {
		return
	}
	fs.starting++
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		// A spare never outlives its function's version: f is checked
		// against the views before the start and after it, outside the
		// lock (each is a view read). An update or delete between the
		// second check and the lock has dropped fs, which the lock finds.
		var p engine.Prestarted
		err := errNotCurrent
		begin := time.Now()
		if sp.s.current(f) {
			if p, err = sp.s.agent.Prestart(sp.s.life, sp.s.containerSpec(f, "")); err == nil && !sp.s.current(f) {
				err = errNotCurrent
			}
		}
		took := time.Since(begin)
		sp.mu.Lock()
		defer sp.mu.Unlock()
		fs.starting--
		if p != nil && (err != nil || sp.stopped || sp.byFn[keyOf(f)] != fs) {
			sp.discardLocked(p)
			p = nil
		}
		if p == nil {
			if err != nil && err != errNotCurrent {
				sp.s.logger.Debug("cannot prestart a container", "function", f.Name, "err", err)
			}
			// The invocations waiting for it start their own.
			fs.failWaiting()
			return
		}
		if fs.start == 0 {
			fs.start = took
		} else {
			fs.start = (fs.start*3 + took) / 4
		}
		if len(fs.waiting) > 0 {
			ch := fs.waiting[0]
			fs.waiting = fs.waiting[1:]
			ch <- p
		} else {
			fs.ready = append(fs.ready, spare{p: p, since: time.Now()})
		}
		sp.fillLocked(f, fs)
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

// drop discards the spares of function fnID's current settings after an
// update, and those of its published versions too after a delete.
func (sp *spares) drop(fnID string, versions bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for k := range sp.byFn {
		if k.id == fnID && (versions || k.published == 0) {
			sp.dropLocked(k)
		}
	}
}

func (sp *spares) dropLocked(k runKey) {
	fs := sp.byFn[k]
	if fs == nil {
		return
	}
	delete(sp.byFn, k)
	for _, s := range fs.ready {
		sp.discardLocked(s.p)
	}
	fs.ready = nil
	// A spare still starting is discarded when it is ready, and the
	// invocations waiting for it start their own.
	fs.failWaiting()
}

// failWaiting tells the invocations waiting for a spare that none is
// coming: each starts its own container.
func (fs *fnSpares) failWaiting() {
	for _, ch := range fs.waiting {
		ch <- nil
	}
	fs.waiting = nil
}

// errNotCurrent is a spare not started, or not kept, because its function
// changed or went meanwhile.
var errNotCurrent = errors.New("the function changed")

// reap discards spares unused for longer than the TTL.
func (sp *spares) reap(now time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for k, fs := range sp.byFn {
		keep := fs.ready[:0]
		for _, s := range fs.ready {
			if now.Sub(s.since) > sp.s.opts.HotIdleTTL {
				sp.discardLocked(s.p)
			} else {
				keep = append(keep, s)
			}
		}
		fs.ready = keep
		if len(fs.ready) == 0 && fs.starting == 0 && len(fs.waiting) == 0 && (len(fs.arrivals) == 0 || now.Sub(fs.arrivals[len(fs.arrivals)-1]) > sp.s.opts.HotIdleTTL) {
			delete(sp.byFn, k)
		}
	}
}

// stopAll discards every spare and prepares no more.
func (sp *spares) stopAll() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.stopped = true
	for k := range sp.byFn {
		sp.dropLocked(k)
	}
}
