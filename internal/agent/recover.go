package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/minilambda/minilambda/projections"
)

// TypeRecovery records what start-up recovery decided.
const TypeRecovery = "recovery.decided"

// Recovery is the payload of recovery.decided.
type Recovery struct {
	V                 int    `json:"v"`
	Interrupted       int    `json:"interrupted"`
	ContainersRemoved int    `json:"containers_removed"`
	Note              string `json:"note,omitempty"`
}

// Recover settles what a crash interrupted: containers of an earlier run
// of this server are removed, and invocations left PENDING or RUNNING end
// FAILED, since their callers are gone. Every decision is an event.
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
	for _, inv := range stuck {
		e, err := projections.NewEvent(projections.TypeInvocationFailed, inv.FunctionID, inv.InvocationID, projections.InvocationEnded{
			V: 1, Attempt: max(inv.Attempts, 1), Error: "interrupted by server restart", ErrorType: projections.ErrorPlatform,
		})
		if err != nil {
			return err
		}
		if _, err := a.log.Append(ctx, e); err != nil {
			return err
		}
	}
	if len(stuck) == 0 && removed == 0 {
		return rmErr
	}
	rec := Recovery{V: 1, Interrupted: len(stuck), ContainersRemoved: removed}
	if rmErr != nil {
		rec.Note = fmt.Sprintf("could not remove old containers: %v", rmErr)
	}
	e, err := projections.NewEvent(TypeRecovery, "", "", rec)
	if err != nil {
		return err
	}
	_, err = a.log.Append(ctx, e)
	a.logger.Info("recovered from an earlier run", "interrupted", len(stuck), "containers_removed", removed)
	return errors.Join(err, rmErr)
}
