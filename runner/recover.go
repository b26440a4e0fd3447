package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Recover settles what a crash interrupted, before Start: containers of
// an earlier run of this server are removed; sync invocations left PENDING
// or RUNNING end FAILED, since their callers are gone; async ones that were
// RUNNING are retried (or end FAILED when out of attempts), and every
// PENDING async invocation goes back in the queue. Every decision is an
// event, and a recovery.decided event sums them up. When the log cannot be
// written, the decisions are recorded in the background once it can, and
// an invocation to retry is queued once its retry is recorded.
func (s *Service) Recover(ctx context.Context) error {
	removed, rmErr := s.engine.RemoveManaged(ctx, map[string]string{LabelInstance: s.opts.Instance})
	var stuck []projections.Invocation
	for _, status := range []string{projections.StatusRunning, projections.StatusPending} {
		q := projections.InvocationQuery{Status: status, Limit: projections.MaxLimit}
		for {
			page, next, err := s.views.Invocations(q)
			if err != nil {
				return err
			}
			stuck = append(stuck, page...)
			if next == "" {
				break
			}
			q.Cursor = next
		}
	}
	rec := projections.RecoveryDecided{ContainersRemoved: removed}
	now := time.Now().UTC()
	// Decisions are recorded one by one while the log takes them; from the
	// first it refuses on, the rest wait together, in order, for it to
	// take them in the background, and so do the retries they queue.
	var recordErr error
	var later []eventlog.Event
	var laterPush []*item
	record := func(e eventlog.Event, next *item) {
		if len(later) == 0 {
			err := s.log.Writable()
			if err == nil {
				_, err = s.log.Append(ctx, e)
			}
			if err == nil {
				if next != nil {
					s.queue.push(next)
				}
				return
			}
			recordErr = err
			if !errors.Is(err, eventlog.ErrUnwritable) {
				return
			}
		}
		later = append(later, e)
		if next != nil {
			laterPush = append(laterPush, next)
		}
	}
	defer func() {
		if len(later) > 0 {
			s.persistLater(func() {
				for _, it := range laterPush {
					s.queue.push(it)
				}
			}, later...)
		}
	}()
	for _, inv := range stuck {
		next := &item{id: inv.InvocationID, fnID: inv.FunctionID, version: publishedOf(inv), created: inv.CreatedAt, attempt: inv.Attempts + 1}
		var e eventlog.Event
		var err error
		switch {
		case !inv.Async:
			rec.Interrupted++
			e, err = projections.NewInvocationEnded(inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
				Attempt: max(inv.Attempts, 1), Error: "interrupted by server restart", ErrorType: function.ErrorPlatform,
			})
			next = nil
		case inv.Status == projections.StatusPending:
			// Nothing to record: it waits in the queue, as it did.
			rec.Requeued++
			if inv.NextAttemptAt != nil {
				next.notBefore = *inv.NextAttemptAt
			}
			s.queue.push(next)
			continue
		default:
			rec.Interrupted++
			f, ferr := s.views.Function(inv.FunctionID)
			if ferr == nil && inv.Attempts < s.maxAttempts(f) {
				rec.Retried++
				e, err = projections.NewInvocationRetried(inv.FunctionID, inv.InvocationID, projections.InvocationRetried{
					Attempt: inv.Attempts, Reason: "interrupted by server restart", NotBefore: now, ErrorType: function.ErrorPlatform,
				})
			} else {
				e, err = projections.NewInvocationEnded(inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
					Attempt: inv.Attempts, Error: "interrupted by server restart, with no attempts left", ErrorType: function.ErrorPlatform,
				})
				next = nil
			}
		}
		if err != nil {
			return err
		}
		record(e, next)
	}
	if rec.Interrupted == 0 && rec.Requeued == 0 && removed == 0 {
		return errors.Join(recordErr, rmErr)
	}
	if rmErr != nil {
		rec.Note = fmt.Sprintf("could not remove old containers: %v", rmErr)
	}
	e, err := projections.NewRecoveryDecided(rec)
	if err != nil {
		return err
	}
	record(e, nil)
	s.logger.Info("recovered from an earlier run", "interrupted", rec.Interrupted, "retried", rec.Retried,
		"requeued", rec.Requeued, "containers_removed", removed)
	return errors.Join(recordErr, rmErr)
}
