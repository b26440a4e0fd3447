package runner

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Schedules fire async invocations of their functions through the durable
// queue. The control plane records them (runner/control, which calls
// Reschedule after each change); the scheduler reads them from the views
// and queues each firing as Enqueue does. Each firing's queued event names
// the schedule and the instant it was due, and the schedule's view keeps
// the newest such instant, so that after a restart the scheduler knows
// which firings it missed: it skips them, or runs the latest of them once,
// as the schedule says. Never a burst: a scheduler that fell behind fires
// the latest due instant only.

// scheduleRetry is how soon a firing the server could not queue is tried
// again.
const scheduleRetry = time.Second

// NextRun is when schedule sc fires next, as the scheduler sees it now.
func (s *Service) NextRun(sc projections.Schedule) time.Time {
	next, err := sc.Schedule()
	if err != nil {
		return time.Time{}
	}
	s.sched.mu.Lock()
	cur, ok := s.sched.cursors[sc.ID]
	s.sched.mu.Unlock()
	if !ok {
		cur = time.Now()
	}
	return next(cur)
}

// scheduler is the state of the loop that fires schedules.
type scheduler struct {
	wake chan struct{}
	mu   sync.Mutex
	// cursors holds, by schedule id, the instant after which the
	// schedule's next firing falls due.
	cursors map[string]time.Time
	// nexts holds, by schedule id, its parsed expression: a schedule never
	// changes, and parsing (its time zone loaded each time) on every round
	// would cost each schedule that much every second.
	nexts map[string]func(time.Time) time.Time
}

// Reschedule tells the scheduler that the schedules changed: it reads
// them again from the views now, not at its next round.
func (s *Service) Reschedule() {
	select {
	case s.sched.wake <- struct{}{}:
	default:
	}
}

// runSchedules fires schedules until ctx ends; started is when the server
// started, before which due firings count as missed.
func (s *Service) runSchedules(ctx context.Context, started time.Time) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := s.fireDue(ctx, started)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.sched.wake:
		case <-timer.C:
		}
	}
}

// fireDue fires every schedule that is due and returns how long to wait
// for the next.
func (s *Service) fireDue(ctx context.Context, started time.Time) time.Duration {
	list, err := s.views.Schedules("")
	if err != nil {
		s.logger.Error("cannot read the schedules", "err", err)
		return scheduleRetry
	}
	now := time.Now()
	wait := time.Minute
	live := make(map[string]bool, len(list))
	for _, sc := range list {
		live[sc.ID] = true
		s.sched.mu.Lock()
		next := s.sched.nexts[sc.ID]
		cur, seen := s.sched.cursors[sc.ID]
		s.sched.mu.Unlock()
		if next == nil {
			if next, err = sc.Schedule(); err != nil {
				continue
			}
			s.sched.mu.Lock()
			s.sched.nexts[sc.ID] = next
			s.sched.mu.Unlock()
		}
		if !seen {
			cur = sc.CreatedAt
			if sc.LastDue != nil {
				cur = *sc.LastDue
			}
			// The firings that fell due while the server was down.
			if missed, ok := latestDue(next, cur, started); ok {
				if sc.Missed == function.MissedRunOnce && !s.fire(ctx, sc, missed) {
					// Tried again next round; the other schedules go on.
					wait = min(wait, scheduleRetry)
					continue
				}
				cur = started
			}
		}
		if due, ok := latestDue(next, cur, now); ok {
			if !s.fire(ctx, sc, due) {
				wait = min(wait, scheduleRetry)
				s.sched.mu.Lock()
				s.sched.cursors[sc.ID] = cur
				s.sched.mu.Unlock()
				continue
			}
			cur = due
		}
		s.sched.mu.Lock()
		s.sched.cursors[sc.ID] = cur
		s.sched.mu.Unlock()
		if n := next(cur); !n.IsZero() {
			wait = min(wait, time.Until(n))
		}
	}
	s.sched.mu.Lock()
	for id := range s.sched.cursors {
		if !live[id] {
			delete(s.sched.cursors, id)
		}
	}
	for id := range s.sched.nexts {
		if !live[id] {
			delete(s.sched.nexts, id)
		}
	}
	s.sched.mu.Unlock()
	return max(wait, 0)
}

// latestDue is the latest instant after from and not after until at
// which a schedule falls due, if any. next never goes back in time, so
// the instant is found by bisection, whatever the number of instants in
// between (a schedule every second, down for a month).
func latestDue(next func(time.Time) time.Time, from, until time.Time) (time.Time, bool) {
	if d := next(from); d.IsZero() || d.After(until) {
		return time.Time{}, false
	}
	// next(lo) is due by until; next(hi) is not.
	lo, hi := from, until
	for hi.Sub(lo) > time.Nanosecond {
		mid := lo.Add(hi.Sub(lo) / 2)
		if d := next(mid); !d.IsZero() && !d.After(until) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return next(lo), true
}

// fire queues one invocation of sc, due at due; false means it could not
// and should be tried again.
func (s *Service) fire(ctx context.Context, sc projections.Schedule, due time.Time) bool {
	_, err := s.Enqueue(ctx, sc.FunctionID, function.Request{Event: sc.Event, ScheduleID: sc.ID, ScheduledAt: &due})
	switch {
	case err == nil, errors.Is(err, projections.ErrNotFound), errors.Is(err, function.ErrConflict):
		// Queued, or its schedule or function is gone, or a firing for
		// this instant is queued already.
		return true
	case errors.Is(err, function.ErrInvalid):
		// It cannot be queued as it is (its function's callback is no
		// longer allowed, say): the instant passes, as a missed one would.
		s.logger.Error("a scheduled invocation cannot be queued; its instant is skipped", "schedule_id", sc.ID, "due", due, "err", err)
		return true
	default:
		s.logger.Warn("cannot queue a scheduled invocation; trying again", "schedule_id", sc.ID, "due", due, "err", err)
		return false
	}
}
