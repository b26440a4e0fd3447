package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

// Register checks spec, fills its defaults and records a new function.
// Its image must be in the engine (see checkImage).
func (c *Plane) Register(ctx context.Context, spec function.Spec) (projections.Function, error) {
	spec, err := function.Normalize(spec)
	if err != nil {
		return projections.Function{}, err
	}
	if err := c.runner.CheckCallback(spec.CallbackURL); err != nil {
		return projections.Function{}, err
	}
	if err := c.checkDestinations(spec); err != nil {
		return projections.Function{}, err
	}
	if err := c.checkImage(ctx, spec.Image); err != nil {
		return projections.Function{}, err
	}
	id := ulid.Make().String()
	e, err := projections.NewFunctionRegistered(id, projections.FunctionRegistered{Spec: spec, CreatedAt: time.Now().UTC()})
	if err != nil {
		return projections.Function{}, err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", function.ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return projections.Function{}, err
	}
	return c.views.Function(id)
}

// Update applies patch to the live function ref and records the new
// version; a new image must be in the engine, as Register's. The runner
// retires the function's hot containers and spares: the next invocation
// starts one of the new version.
func (c *Plane) Update(ctx context.Context, ref string, patch function.Patch) (projections.Function, error) {
	f, err := c.views.Function(ref)
	if err != nil {
		return f, err
	}
	return c.change(ctx, f, patch.Apply(f.Spec))
}

// UpdatePackage builds the zip archive data as the new code of function
// ref, a function deployed as a zip package, on its runtime, and records
// the change as Update does.
func (c *Plane) UpdatePackage(ctx context.Context, ref string, data []byte) (projections.Function, error) {
	f, err := c.views.Function(ref)
	if err != nil {
		return f, err
	}
	if f.Package == nil {
		return f, function.InvalidField("zip_file", "function %s is deployed as a container image, not a zip package: give it another image instead", f.Name)
	}
	spec, err := c.BuildPackage(ctx, f.Spec, f.Package.Runtime, data)
	if err != nil {
		return f, err
	}
	return c.change(ctx, f, spec)
}

// change records spec as the new settings of the live function f.
func (c *Plane) change(ctx context.Context, f projections.Function, spec function.Spec) (projections.Function, error) {
	spec, err := function.Normalize(spec)
	if err != nil {
		return f, err
	}
	if err := c.runner.CheckCallback(spec.CallbackURL); err != nil {
		return f, err
	}
	if err := c.checkDestinations(spec); err != nil {
		return f, err
	}
	// Only a change of image is checked: the image a function has stays
	// its own, even when the engine lost it since.
	if spec.Image != f.Image {
		if err := c.checkImage(ctx, spec.Image); err != nil {
			return f, err
		}
	}
	e, err := projections.NewFunctionUpdated(f.ID, projections.FunctionUpdated{Version: f.Version + 1, Spec: spec})
	if err != nil {
		return f, err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		cur, err := projections.FunctionByRef(r, f.ID)
		if err != nil {
			return err
		}
		if cur.Version != f.Version {
			return fmt.Errorf("%w: function %s changed meanwhile; try again", function.ErrConflict, f.Name)
		}
		if spec.Name != f.Name && projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", function.ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return f, err
	}
	c.runner.Retire(f.ID, false)
	return c.views.Function(f.ID)
}

// Delete records the removal of the live function ref, and the runner
// retires its containers and those of its versions. Its invocations stay
// readable.
func (c *Plane) Delete(ctx context.Context, ref string) error {
	f, err := c.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewFunctionDeleted(f.ID)
	if err != nil {
		return err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.FunctionByRef(r, f.ID)
		return err
	}, e)
	if err == nil {
		c.runner.Retire(f.ID, true)
	}
	return err
}

// Tag sets the tags set (replacing values) and removes those named in
// remove on the live function ref, and records its tags as they are then.
// A function whose tags changed meanwhile is a conflict.
func (c *Plane) Tag(ctx context.Context, ref string, set map[string]string, remove []string) (projections.Function, error) {
	f, err := c.views.Function(ref)
	if err != nil {
		return f, err
	}
	tags, err := function.ChangeTags(f.Tags, set, remove)
	if err != nil {
		return f, err
	}
	if maps.Equal(tags, f.Tags) {
		return f, nil
	}
	e, err := projections.NewFunctionTagged(f.ID, projections.FunctionTagged{Tags: tags})
	if err != nil {
		return f, err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		cur, err := projections.FunctionByRef(r, f.ID)
		if err != nil {
			return err
		}
		if !maps.Equal(cur.Tags, f.Tags) {
			return fmt.Errorf("%w: function %s's tags changed meanwhile; try again", function.ErrConflict, f.Name)
		}
		return nil
	}, e)
	if err != nil {
		return f, err
	}
	return c.views.Function(f.ID)
}

// checkDestinations refuses a destination the records could not reach: a
// URL to a host the operator does not allow callbacks to, or a function
// that does not exist (one deleted later gets none: the server's log says
// so).
func (c *Plane) checkDestinations(spec function.Spec) error {
	d := spec.Destinations
	if d == nil {
		return nil
	}
	for field, target := range map[string]string{"destinations.on_success": d.OnSuccess, "destinations.on_failure": d.OnFailure} {
		if target == "" {
			continue
		}
		dest, err := function.ParseDestination(field, target)
		if err != nil {
			return fmt.Errorf("%w: %w", function.ErrInvalid, err)
		}
		if dest.URL != "" {
			if err := c.runner.CheckCallback(dest.URL); err != nil {
				return function.InvalidField(field, "%s: %v", field, strings.TrimPrefix(err.Error(), function.ErrInvalid.Error()+": "))
			}
			continue
		}
		if dest.Function == spec.Name {
			continue
		}
		if _, err := c.views.Function(dest.Function); errors.Is(err, projections.ErrNotFound) {
			return function.InvalidField(field, "%s: there is no function %q", field, dest.Function)
		} else if err != nil {
			return err
		}
	}
	return nil
}
