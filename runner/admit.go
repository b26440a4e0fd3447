package runner

import (
	"fmt"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Admission is one step, the same for sync and async invocations: admit
// lets an invocation in when the log takes writes (nothing runs that could
// not be recorded), the server and its function have a slot free (limits),
// and the memory budget has room for what it holds (its event, when that
// is counted, and its outputs). The admission it returns holds that room
// until leave gives all of it back. A sync caller hears why it was refused;
// an async attempt waits in the queue for as long as the reason says.
//
// Words, one meaning each: limits and the budget take and give; an
// admission leaves; a container is done after its run; the API's request
// bodies Reserve and Release bytes of the budget (see budget.go).

// refusal is why enter let an invocation in or not; the queue's scan
// reads it without an error being made for each item it passes over.
type refusal int

const (
	entered      refusal = iota
	serverFull           // the server runs MaxInFlight invocations
	functionFull         // the function runs its concurrency
	noRoom               // the memory budget has no room
)

// admission is the room one invocation holds: a slot of the limits and
// bytes of the memory budget.
type admission struct {
	s     *Service
	f     projections.Function
	slot  bool  // a slot of the limits, for f
	bytes int64 // of the memory budget
}

// admit lets one invocation of f in, holding bytes of the memory budget,
// or says why not: eventlog.ErrUnwritable, or an error wrapping
// function.ErrBusy. It is enter with the log's writability first, and the
// refusal in words, for a caller who hears it.
func (s *Service) admit(f projections.Function, bytes int64) (*admission, error) {
	if err := s.log.Writable(); err != nil {
		return nil, err
	}
	adm, why := s.enter(f, bytes)
	switch why {
	case serverFull, functionFull:
		return nil, s.limits.busy(f)
	case noRoom:
		return nil, s.budgetBusy()
	}
	return adm, nil
}

// enter takes a slot of the limits and bytes of the budget for one
// invocation of f, both or neither. It writes nothing and makes no error,
// so that the queue calls it for each item it scans, under its lock, once
// it has seen that the log takes writes.
func (s *Service) enter(f projections.Function, bytes int64) (*admission, refusal) {
	if why := s.limits.take(f); why != entered {
		return nil, why
	}
	if !s.budget.take(bytes) {
		s.limits.give(f)
		return nil, noRoom
	}
	return &admission{s: s, f: f, slot: true, bytes: bytes}, entered
}

// leave gives back the room the admission holds. Giving back a slot wakes
// a worker: a queued invocation may fit now.
func (a *admission) leave() {
	if a.bytes != 0 {
		a.s.budget.give(a.bytes)
		a.bytes = 0
	}
	if a.slot {
		a.s.limits.give(a.f)
		a.slot = false
		a.s.queue.wakeOne()
	}
}

// grow adds n bytes to the admission's part of the memory budget, if they
// fit: for an async event whose size is known only once it is read.
func (a *admission) grow(n int64) bool {
	if !a.s.budget.take(n) {
		return false
	}
	a.bytes += n
	return true
}

// later splits the admission's bytes off into an admission of their own,
// for a record that lands after the invocation has answered (persistLater):
// its outputs are held until then, while leave gives back the slot alone.
func (a *admission) later() *admission {
	b := &admission{s: a.s, f: a.f, bytes: a.bytes}
	a.bytes = 0
	return b
}

// budgetBusy is the refusal of the memory budget.
func (s *Service) budgetBusy() error {
	return fmt.Errorf("%w: the server holds as many events and outputs as its memory budget of %d MiB allows; try again shortly",
		function.ErrBusy, s.opts.MemoryBudget>>20)
}
