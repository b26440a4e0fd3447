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
// event, and a recovery.decided event sums them up.
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
	for _, inv := range stuck {
		var e eventlog.Event
		var err error
		next := &item{id: inv.InvocationID, fnID: inv.FunctionID, created: inv.CreatedAt, attempt: inv.Attempts + 1}
		switch {
		case !inv.Async:
			rec.Interrupted++
			e, err = projections.NewInvocationEnded(inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
				Attempt: max(inv.Attempts, 1), Error: "interrupted by server restart", ErrorType: function.ErrorPlatform,
			})
		case inv.Status == projections.StatusPending:
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
				s.queue.push(next)
			} else {
				e, err = projections.NewInvocationEnded(inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
					Attempt: inv.Attempts, Error: "interrupted by server restart, with no attempts left", ErrorType: function.ErrorPlatform,
				})
			}
		}
		if err != nil {
			return err
		}
		if _, err := s.log.Append(ctx, e); err != nil {
			return err
		}
	}
	if rec.Interrupted == 0 && rec.Requeued == 0 && removed == 0 {
		return rmErr
	}
	if rmErr != nil {
		rec.Note = fmt.Sprintf("could not remove old containers: %v", rmErr)
	}
	e, err := projections.NewRecoveryDecided(rec)
	if err != nil {
		return err
	}
	_, err = s.log.Append(ctx, e)
	s.logger.Info("recovered from an earlier run", "interrupted", rec.Interrupted, "retried", rec.Retried,
		"requeued", rec.Requeued, "containers_removed", removed)
	return errors.Join(err, rmErr)
}
