package projections

import (
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
)

// Schedule triggers: a schedule fires async invocations of its function,
// each recorded with the schedule's id and the instant it was due.

const viewSchedules = "schedules" // function id 0 schedule id -> Schedule

// Schedule is the read model of a schedule trigger.
type Schedule struct {
	ID         string `json:"id"`
	FunctionID string `json:"function_id"`
	function.ScheduleSpec
	CreatedAt time.Time `json:"created_at"`
	// LastDue is the instant the newest invocation it fired was due.
	LastDue *time.Time `json:"last_due_at,omitempty"`
}

func scheduleKey(fnID, id string) []byte { return indexKey(fnID, id) }

// ScheduleOf returns schedule id of function fnID.
func ScheduleOf(r eventlog.ViewReader, fnID, id string) (Schedule, error) {
	return getJSON[Schedule](r, viewSchedules, scheduleKey(fnID, id), fmt.Sprintf("schedule %q of function %s", id, fnID))
}

// SchedulesOf lists the schedules of function fnID, or of every function
// when fnID is empty.
func SchedulesOf(r eventlog.ViewReader, fnID string) ([]Schedule, error) {
	prefix := []byte(nil)
	if fnID != "" {
		prefix = indexKey(fnID, "")
	}
	return scanJSON[Schedule](r, viewSchedules, prefix)
}

func (b *batch) scheduleCreated(e *eventlog.Event) error {
	var p ScheduleCreated
	if err := decode(e, &p); err != nil {
		return err
	}
	if _, err := b.liveFunction(e.FunctionID); err != nil {
		return err
	}
	if p.ID == "" || b.tx.Get(viewSchedules, scheduleKey(e.FunctionID, p.ID)) != nil {
		return fmt.Errorf("%w: schedule %q of function %s created twice or without an id", ErrInconsistent, p.ID, e.FunctionID)
	}
	return putJSON(b.tx, viewSchedules, scheduleKey(e.FunctionID, p.ID), Schedule{
		ID: p.ID, FunctionID: e.FunctionID, ScheduleSpec: p.ScheduleSpec, CreatedAt: e.Time,
	})
}

func (b *batch) scheduleDeleted(e *eventlog.Event) error {
	var p ScheduleDeleted
	if err := decode(e, &p); err != nil {
		return err
	}
	if b.tx.Get(viewSchedules, scheduleKey(e.FunctionID, p.ID)) == nil {
		return fmt.Errorf("%w: schedule %q of function %s deleted but never created", ErrInconsistent, p.ID, e.FunctionID)
	}
	return b.tx.Delete(viewSchedules, scheduleKey(e.FunctionID, p.ID))
}

// scheduleFired notes on a schedule the instant its newest invocation was
// due; a schedule deleted since has nothing to note.
func (b *batch) scheduleFired(fnID, id string, due time.Time) error {
	sc, err := ScheduleOf(b.tx, fnID, id)
	if err != nil {
		return nil
	}
	if sc.LastDue == nil || due.After(*sc.LastDue) {
		sc.LastDue = &due
		return putJSON(b.tx, viewSchedules, scheduleKey(fnID, id), sc)
	}
	return nil
}

// dropSchedules deletes a deleted function's schedules.
func (b *batch) dropSchedules(fnID string) error {
	return deletePrefix(b.tx, viewSchedules, indexKey(fnID, ""))
}

// Schedules lists function ref's schedules, or every live function's
// when ref is empty.
func (s *Views) Schedules(ref string) (out []Schedule, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		id := ""
		if ref != "" {
			f, err := FunctionByRef(r, ref)
			if err != nil {
				return err
			}
			id = f.ID
		}
		out, err = SchedulesOf(r, id)
		return err
	})
	return out, err
}
