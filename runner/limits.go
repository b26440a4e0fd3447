package runner

import (
	"fmt"
	"sync"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// limits bounds the invocations running at once: all of them by the
// server's MaxInFlight, each function's by its concurrency. A sync call
// past a bound is refused at once; a queued one waits for room.
type limits struct {
	mu       sync.Mutex
	max      int
	inFlight int
	running  map[string]int // by function id
}

func (l *limits) init(max int) {
	l.max = max
	l.running = make(map[string]int)
}

// acquire reserves room for one invocation of f, or says why there is
// none with an error wrapping function.ErrBusy.
func (l *limits) acquire(f projections.Function) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tryLocked(f) {
		return nil
	}
	if l.inFlight >= l.max {
		return fmt.Errorf("%w: the server runs %d invocations, its limit", function.ErrBusy, l.inFlight)
	}
	return fmt.Errorf("%w: function %s runs %d invocations, its concurrency", function.ErrBusy, f.Name, f.Concurrency)
}

// tryAcquire reserves room for one invocation of f if there is some.
func (l *limits) tryAcquire(f projections.Function) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tryLocked(f)
}

func (l *limits) tryLocked(f projections.Function) bool {
	if l.inFlight >= l.max || f.Concurrency > 0 && l.running[f.ID] >= f.Concurrency {
		return false
	}
	l.inFlight++
	l.running[f.ID]++
	return true
}

// release gives back what acquire reserved.
func (l *limits) release(f projections.Function) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if l.running[f.ID]--; l.running[f.ID] == 0 {
		delete(l.running, f.ID)
	}
}
