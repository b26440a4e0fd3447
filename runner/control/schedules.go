package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

// CreateSchedule adds a schedule to function ref.
func (c *Plane) CreateSchedule(ctx context.Context, ref string, spec function.ScheduleSpec) (projections.Schedule, error) {
	spec, err := spec.Normalize()
	if err != nil {
		return projections.Schedule{}, err
	}
	f, err := c.views.Function(ref)
	if err != nil {
		return projections.Schedule{}, err
	}
	id := ulid.Make().String()
	e, err := projections.NewScheduleCreated(f.ID, projections.ScheduleCreated{ID: id, ScheduleSpec: spec})
	if err != nil {
		return projections.Schedule{}, err
	}
	if _, err := c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if err := projections.FunctionLive(r, f.ID); err != nil {
			return err
		}
		if list, err := projections.SchedulesOf(r, f.ID); err != nil || len(list) >= function.MaxSchedulesPerFn {
			return errors.Join(err, fmt.Errorf("%w: function %s has %d schedules, the most it may have", function.ErrInvalid, f.Name, function.MaxSchedulesPerFn))
		}
		return nil
	}, e); err != nil {
		return projections.Schedule{}, err
	}
	c.runner.Reschedule()
	return c.scheduleOf(f.ID, id)
}

// DeleteSchedule removes schedule id of function ref.
func (c *Plane) DeleteSchedule(ctx context.Context, ref, id string) error {
	f, err := c.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewScheduleDeleted(f.ID, id)
	if err != nil {
		return err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.ScheduleOf(r, f.ID, id)
		return err
	}, e)
	c.runner.Reschedule()
	return err
}

func (c *Plane) scheduleOf(fnID, id string) (sc projections.Schedule, err error) {
	err = c.log.View(func(r eventlog.ViewReader) error {
		sc, err = projections.ScheduleOf(r, fnID, id)
		return err
	})
	return sc, err
}
