package runner

import (
	"fmt"
	"sync"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// limits bounds the invocations running at once: all of them by the
// server's MaxInFlight, each function's by its concurrency. A sync call
// past a bound is refused at once; a queued one waits for room. Only
// admit takes a slot (admit.go).
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

// take takes a slot for one invocation of f, or says whose bound is
// reached.
func (l *limits) take(f projections.Function) refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.inFlight >= l.max:
		return serverFull
	case f.Concurrency > 0 && l.running[f.ID] >= f.Concurrency:
		return functionFull
	}
	l.inFlight++
	l.running[f.ID]++
	return entered
}

// busy says, for a sync caller, which bound a refusal of take met.
func (l *limits) busy(f projections.Function) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight >= l.max {
		return fmt.Errorf("%w: the server runs %d invocations, its limit", function.ErrBusy, l.inFlight)
	}
	return fmt.Errorf("%w: function %s runs %d invocations, its concurrency", function.ErrBusy, f.Name, f.Concurrency)
}

// give gives back a slot take took.
func (l *limits) give(f projections.Function) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if l.running[f.ID]--; l.running[f.ID] == 0 {
		delete(l.running, f.ID)
	}
}
