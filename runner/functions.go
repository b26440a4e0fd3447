package runner

import (
	"math/rand/v2"
	"strconv"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The runner reads functions from the views and never changes them: the
// control plane (runner/control) records them, and tells the runner, by
// Retire, when the containers of a function's settings should go.

// Retire lets go of the containers of function fnID after a change of its
// settings: its hot pool drains and its spares go; after a delete
// (deleted), those of its published versions too.
func (s *Service) Retire(fnID string, deleted bool) {
	reason := "the function was updated"
	if deleted {
		reason = "the function was deleted"
	}
	s.spares.drop(fnID, deleted)
	s.pools.retire(fnID, reason, deleted)
}

// CheckCallback accepts an empty URL, or an http(s) URL whose host the
// operator allowed (Options.CallbackHosts), else an error wrapping
// function.ErrInvalid.
func (s *Service) CheckCallback(url string) error { return s.callbacks.check(url) }

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

// resolve returns function ref as the qualifier names it, an alias with a
// second version picking one at random by its weights.
func (s *Service) resolve(ref, qualifier string) (projections.Resolved, error) {
	q, err := function.ParseQualifier(qualifier)
	if err != nil {
		return projections.Resolved{}, err
	}
	return s.views.Resolve(ref, q, rand.Float64())
}

// publishedOf is the published version an invocation runs, 0 for $LATEST.
func publishedOf(inv projections.Invocation) int {
	n, _ := strconv.Atoi(inv.ExecutedVersion)
	return n
}
