package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"

	"github.com/minilambda/minilambda/projections"
)

// TypeRecovery records what start-up recovery decided.
const TypeRecovery = "recovery.decided"

// Recovery is the payload of recovery.decided.
type Recovery struct {
	V                 int    `json:"v"`
	Interrupted       int    `json:"interrupted"` // RUNNING, or sync PENDING, when the server stopped
	Retried           int    `json:"retried"`     // interrupted async invocations queued for another attempt
	Requeued          int    `json:"requeued"`    // PENDING async invocations back in the queue
	ContainersRemoved int    `json:"containers_removed"`
	Note              string `json:"note,omitempty"`
}

// Recover settles what a crash interrupted, before Start: containers of
// an earlier run of this server are removed; sync invocations left PENDING
// or RUNNING end FAILED, since their callers are gone; async ones that were
// RUNNING are retried (or end FAILED when out of attempts), and every
// PENDING async invocation goes back in the queue. Every decision is an
// event.
func (a *Agent) Recover(ctx context.Context) error {
	removed, rmErr := a.run.RemoveManaged(ctx, map[string]string{LabelInstance: a.opts.Instance})
	var stuck []projections.Invocation
	for _, status := range []string{projections.StatusRunning, projections.StatusPending} {
		q := projections.InvocationQuery{Status: status, Limit: projections.MaxLimit}
		for {
			page, next, err := a.views.Invocations(q)
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
	rec := Recovery{V: 1, ContainersRemoved: removed}
	now := time.Now().UTC()
	for _, inv := range stuck {
		var e eventlog.Event
		var err error
		next := &item{id: inv.InvocationID, fnID: inv.FunctionID, created: inv.CreatedAt, attempt: inv.Attempts + 1}
		switch {
		case !inv.Async:
			rec.Interrupted++
			e, err = projections.NewEvent(projections.TypeInvocationFailed, inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
				V: 1, Attempt: max(inv.Attempts, 1), Error: "interrupted by server restart", ErrorType: projections.ErrorPlatform,
			})
		case inv.Status == projections.StatusPending:
			rec.Requeued++
			if inv.NextAttemptAt != nil {
				next.notBefore = *inv.NextAttemptAt
			}
			a.push(next)
			continue
		default:
			rec.Interrupted++
			f, ferr := a.views.Function(inv.FunctionID)
			if ferr == nil && inv.Attempts < a.maxAttempts(f) {
				rec.Retried++
				e, err = projections.NewEvent(projections.TypeInvocationRetried, inv.FunctionID, inv.InvocationID, projections.InvocationRetried{
					V: 1, Attempt: inv.Attempts, Reason: "interrupted by server restart", NotBefore: now, ErrorType: projections.ErrorPlatform,
				})
				a.push(next)
			} else {
				e, err = projections.NewEvent(projections.TypeInvocationFailed, inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
					V: 1, Attempt: inv.Attempts, Error: "interrupted by server restart, with no attempts left", ErrorType: projections.ErrorPlatform,
				})
			}
		}
		if err != nil {
			return err
		}
		if _, err := a.log.Append(ctx, e); err != nil {
			return err
		}
	}
	if rec.Interrupted == 0 && rec.Requeued == 0 && removed == 0 {
		return rmErr
	}
	if rmErr != nil {
		rec.Note = fmt.Sprintf("could not remove old containers: %v", rmErr)
	}
	e, err := projections.NewEvent(TypeRecovery, "", "", rec)
	if err != nil {
		return err
	}
	_, err = a.log.Append(ctx, e)
	a.logger.Info("recovered from an earlier run", "interrupted", rec.Interrupted, "retried", rec.Retried,
		"requeued", rec.Requeued, "containers_removed", removed)
	return errors.Join(err, rmErr)
}
