package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

// Register checks spec, fills its defaults and records a new function.
// Its image must be in the engine (see checkImage).
func (s *Service) Register(ctx context.Context, spec function.Spec) (projections.Function, error) {
	spec, err := function.Normalize(spec)
	if err != nil {
		return projections.Function{}, err
	}
	if err := s.callbacks.check(spec.CallbackURL); err != nil {
		return projections.Function{}, err
	}
	if err := s.checkImage(ctx, spec.Image); err != nil {
		return projections.Function{}, err
	}
	id := ulid.Make().String()
	e, err := projections.NewFunctionRegistered(id, projections.FunctionRegistered{Spec: spec, CreatedAt: time.Now().UTC()})
	if err != nil {
		return projections.Function{}, err
	}
	_, err = s.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", function.ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return projections.Function{}, err
	}
	return s.views.Function(id)
}

// Update applies patch to the live function ref and records the new
// version; a new image must be in the engine, as Register's. The
// function's hot containers and spare are let go: the next invocation
// starts one of the new version.
func (s *Service) Update(ctx context.Context, ref string, patch function.Patch) (projections.Function, error) {
	f, err := s.views.Function(ref)
	if err != nil {
		return f, err
	}
	spec, err := function.Normalize(patch.Apply(f.Spec))
	if err != nil {
		return f, err
	}
	if err := s.callbacks.check(spec.CallbackURL); err != nil {
		return f, err
	}
	// Only a change of image is checked: the image a function has stays
	// its own, even when the engine lost it since.
	if spec.Image != f.Image {
		if err := s.checkImage(ctx, spec.Image); err != nil {
			return f, err
		}
	}
	e, err := projections.NewFunctionUpdated(f.ID, projections.FunctionUpdated{Version: f.Version + 1, Spec: spec})
	if err != nil {
		return f, err
	}
	_, err = s.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
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
	s.letGo(f.ID, "the function was updated", false)
	return s.views.Function(f.ID)
}

// Delete records the removal of the live function ref. Its invocations
// stay readable.
func (s *Service) Delete(ctx context.Context, ref string) error {
	f, err := s.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewFunctionDeleted(f.ID)
	if err != nil {
		return err
	}
	_, err = s.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.FunctionByRef(r, f.ID)
		return err
	}, e)
	if err == nil {
		s.letGo(f.ID, "the function was deleted", true)
	}
	return err
}

// letGo drains a function's hot pool and drops its spares after an
// update, and those of its published versions too after a delete.
func (s *Service) letGo(fnID, reason string, versions bool) {
	s.spares.drop(fnID, versions)
	s.pools.retire(fnID, reason, versions)
}

// runKey tells apart the containers of a function's current settings and
// those of each of its published versions.
type runKey struct {
	id        string
	published int
}

func keyOf(f projections.Function) runKey { return runKey{f.ID, f.Published} }

// current reports whether f is still what an invocation of it would run:
// the function's live settings for $LATEST, a live function for a
// published version (which never changes).
func (s *Service) current(f projections.Function) bool {
	cur, err := s.views.Function(f.ID)
	return err == nil && (f.Published != 0 || cur.Version == f.Version)
}
