package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The async queue is the log: an invocation.queued event with "async" is
// durable before the client hears 202, and a restart finds every PENDING
// async invocation in the views again (Recover). In memory the queue keeps
// only the ids in order of arrival, with when each may next run.

// How long an async attempt waits when the memory budget has no room for
// it, when the log could not record its start, or when its function's
// pool stayed busy for its whole timeout.
const (
	budgetWait     = 200 * time.Millisecond
	unwritableWait = time.Second
	busyWait       = 100 * time.Millisecond
)

type item struct {
	id, fnID  string
	version   int // the published version it runs, 0 for $LATEST
	created   time.Time
	notBefore time.Time
	attempt   int   // the attempt to run next, from 1
	size      int64 // bytes of its event; 0 until known
}

// after is the item again, to run no sooner than d from now.
func (it item) after(d time.Duration) *item {
	it.notBefore = time.Now().Add(d)
	return &it
}

// queue is the async invocations waiting for a worker or for their next
// attempt, oldest first.
type queue struct {
	mu    sync.Mutex
	items []*item
	wake  chan struct{}
	depth prometheus.Gauge
}

func (q *queue) init(depth prometheus.Gauge) {
	q.wake = make(chan struct{}, 1)
	q.depth = depth
}

// wakeOne wakes a sleeping worker, if any.
func (q *queue) wakeOne() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push adds an item in arrival order (ULIDs sort by time).
func (q *queue) push(it *item) {
	q.mu.Lock()
	i, _ := slices.BinarySearchFunc(q.items, it.id, func(q *item, id string) int { return strings.Compare(q.id, id) })
	q.items = slices.Insert(q.items, i, it)
	q.depth.Set(float64(len(q.items)))
	q.mu.Unlock()
	// Every worker may be asleep; one wake is enough, since a worker that
	// takes an item wakes the next.
	q.wakeOne()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Enqueue queues an async invocation of ref and returns its PENDING
// record once the queued event is durable.
func (s *Service) Enqueue(ctx context.Context, ref string, req function.Request) (projections.Invocation, error) {
	var inv projections.Invocation
	rf, err := s.resolve(ref, req.Qualifier)
	if err != nil {
		return inv, err
	}
	f := rf.Function
	if req.CallbackURL == "" {
		req.CallbackURL = f.CallbackURL
	}
	if err := s.callbacks.check(req.CallbackURL); err != nil {
		return inv, err
	}
	if req, err = req.Check(); err != nil {
		return inv, err
	}
	if err := s.log.Writable(); err != nil {
		return inv, err
	}
	if depth := s.queue.len(); depth >= s.opts.MaxQueue {
		return inv, fmt.Errorf("%w: %d async invocations are queued, the server's limit", function.ErrBusy, depth)
	}
	q, err := queuedEvent(rf, ulid.Make().String(), req, true)
	if err != nil {
		return inv, err
	}
	var events []eventlog.Event
	if req.ScheduleID != "" {
		events, err = s.appendScheduled(ctx, f, req, q)
	} else {
		events, err = s.appendQueued(ctx, f, q)
	}
	if err != nil {
		return inv, err
	}
	s.queue.push(&item{id: q.InvocationID, fnID: f.ID, version: f.Published, created: events[0].Time, attempt: 1, size: int64(len(req.Event))})
	return projections.Record(events...)
}

// work runs queued attempts until ctx ends. From that moment it takes no
// more: shutdown leaves what has not started in the queue, untouched.
func (s *Service) work(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		it, f, adm, wait := s.next(ctx)
		if it != nil {
			s.queue.wakeOne() // there may be more for another worker
			s.runAsync(it, f, adm)
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.queue.wake:
		case <-timer.C:
		}
	}
}

// next takes the oldest queued item that may run now and is admitted
// (enter), in the same step: an item refused for its function's
// concurrency or the memory budget holds back the later items of its
// function for this scan, so none passes it, and the scan stops once the
// server runs all it may. While the log takes no writes, nothing is
// taken. An item that will not run (its function deleted, or its event
// too old) is taken without an admission. Otherwise next says how long to
// wait. Once ctx has ended it takes nothing.
func (s *Service) next(ctx context.Context) (it *item, f projections.Function, adm *admission, wait time.Duration) {
	now := time.Now()
	wait = time.Minute
	// Outside the queue's lock: while the log refuses writes, Writable
	// may probe it with a write.
	writable := s.log.Writable() == nil
	fns := map[runKey]*projections.Function{}
	held := map[runKey]bool{} // refused in this scan
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	if ctx.Err() != nil {
		return nil, f, nil, wait
	}
	for i, it := range s.queue.items {
		if d := it.notBefore.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		k := runKey{it.fnID, it.version}
		if held[k] {
			continue
		}
		f, ok := fns[k]
		if !ok {
			rf, err := s.views.Resolve(it.fnID, function.Qualifier{Version: it.version}, 0)
			fn := rf.Function
			if err != nil {
				// Deleted since: runAsync records why it cannot run.
				fn = projections.Function{ID: it.fnID, Deleted: true}
			}
			f = &fn
			fns[k] = f
		}
		if !f.Deleted && now.Sub(it.created) <= s.maxEventAge(*f) {
			if !writable {
				it.notBefore = now.Add(unwritableWait)
				wait = min(wait, unwritableWait)
				continue
			}
			// The event counts against the memory budget with the outputs
			// when its size is known; runAsync adds it once it is read.
			var why refusal
			adm, why = s.enter(*f, it.size+s.outputRoom(*f))
			switch why {
			case serverFull:
				return nil, projections.Function{}, nil, wait
			case functionFull:
				held[k] = true
				continue
			case noRoom:
				held[k] = true
				it.notBefore = now.Add(budgetWait)
				wait = min(wait, budgetWait)
				continue
			}
		}
		s.queue.items = slices.Delete(s.queue.items, i, i+1)
		s.queue.depth.Set(float64(len(s.queue.items)))
		return it, *f, adm, 0
	}
	return nil, projections.Function{}, nil, wait
}

// maxEventAge is how long an async invocation of f may wait and be
// retried.
func (s *Service) maxEventAge(f projections.Function) time.Duration {
	if f.MaxEventAge > 0 {
		return time.Duration(f.MaxEventAge) * time.Second
	}
	return s.opts.MaxEventAge
}

// maxAttempts is how many attempts an async invocation of f gets.
func (s *Service) maxAttempts(f projections.Function) int {
	if f.MaxAttempts > 0 {
		return f.MaxAttempts
	}
	return s.opts.MaxAttempts
}

// runAsync runs one attempt of a queued invocation, admitted by next, and
// records what comes of it: the end, or a retry. Without an admission, it
// records why the invocation cannot run.
func (s *Service) runAsync(it *item, f projections.Function, adm *admission) {
	// Records are appended even when shutdown has cut the attempt, and
	// tried while the log refuses them until shutdown's grace ends; after
	// that, the next start's recovery settles the invocation.
	final := func(ended projections.InvocationEnded, res engine.Result, runErr error, condition string) {
		d := s.destination(f, it.id, ended, condition)
		var extra []eventlog.Event
		if d.queued != nil {
			extra = append(extra, *d.queued)
		}
		e, err := s.end(s.attempts, f, it.id, ended, res, runErr, nil, extra...)
		if err != nil {
			s.logger.Error("cannot record the end of an async invocation", "invocation_id", it.id, "err", err)
			return
		}
		s.callbacks.send(it.id)
		s.sent(d, it.id, f, e.Time)
	}
	platform := func(msg, condition string) {
		final(projections.InvocationEnded{
			Attempt: it.attempt - 1, Error: msg, ErrorType: function.ErrorPlatform,
		}, engine.Result{}, errors.New(msg), condition)
	}
	switch {
	case adm != nil:
	case f.Deleted:
		// Its destinations went with it.
		platform("the function was deleted before the invocation could run", conditionRetries)
		return
	default:
		platform(fmt.Sprintf("dropped: the event is older than the maximum event age of %v", s.maxEventAge(f)), conditionEventAged)
		return
	}
	defer adm.leave()
	q, err := s.views.Queued(it.id)
	if err != nil {
		platform(fmt.Sprintf("cannot read the queued event: %v", err), conditionRetries)
		return
	}
	if it.size == 0 {
		// Queued before this start: its size is known now, and counts
		// against the budget as it would have in next.
		it.size = int64(len(q.Event))
		if !adm.grow(it.size) {
			s.queue.push(it.after(budgetWait))
			return
		}
	}
	a := &attempt{f: f, id: it.id, n: it.attempt, event: q.Event, timeout: f.TimeoutFor(q.Timeout), trace: q.TraceID, supplied: q.TraceSupplied}
	if len(a.event) == 0 {
		a.event = []byte("{}")
	}
	started, res, runErr := s.run(s.attempts, a)
	switch {
	case len(started) > 0:
	case errors.Is(runErr, context.Canceled):
		// Shutdown cut the attempt before it started: nothing ran, so
		// nothing is recorded, and the next start runs it as this attempt.
		return
	case errors.Is(runErr, eventlog.ErrUnwritable):
		// Its start could not be recorded, so it did not start: it waits
		// in the queue, as this attempt, for the log to take writes.
		s.queue.push(it.after(unwritableWait))
		return
	case errors.Is(runErr, function.ErrBusy):
		// Every container of its pool stayed busy: not an attempt.
		s.queue.push(it.after(busyWait))
		return
	}
	ended := outcome(a, res, runErr)
	if errors.Is(runErr, context.Canceled) {
		ended.Error = "interrupted by server shutdown; the container was killed"
	}
	if ended.ErrorType == "" {
		final(ended, res, runErr, conditionSuccess)
		return
	}
	backoff := min(s.opts.RetryBase<<(it.attempt-1), s.opts.RetryMax)
	notBefore := time.Now().Add(backoff)
	switch {
	case it.attempt >= s.maxAttempts(f):
		ended.Error = fmt.Sprintf("%s (attempt %d of %d, no retries left)", ended.Error, it.attempt, s.maxAttempts(f))
		final(ended, res, runErr, conditionRetries)
	case notBefore.Sub(it.created) > s.maxEventAge(f):
		ended.Error = fmt.Sprintf("%s (a retry would pass the maximum event age of %v)", ended.Error, s.maxEventAge(f))
		final(ended, res, runErr, conditionEventAged)
	default:
		e, err := projections.NewInvocationRetried(f.ID, it.id, projections.InvocationRetried{
			Attempt: it.attempt, Reason: ended.Error, NotBefore: notBefore.UTC(),
			ErrorType: ended.ErrorType, ExitCode: ended.ExitCode, DurationMS: ended.DurationMS,
			Result: ended.Result, Logs: ended.Logs,
			LambdaErrorType: ended.LambdaErrorType, InitDurationMS: ended.InitDurationMS,
		})
		if err == nil {
			_, err = s.persist(s.attempts, e)
		}
		if err != nil {
			s.logger.Error("cannot record a retry", "invocation_id", it.id, "err", err)
			return
		}
		s.metrics.Retries.Inc()
		retry := it.after(backoff)
		retry.attempt++
		s.queue.push(retry)
	}
}
