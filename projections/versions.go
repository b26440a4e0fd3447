package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
)

// Published versions and aliases: a version freezes a function's settings
// and image digest under a number; an alias names a version (or the
// current settings), with an optional share for a second one.

// View names, beside those of projector.go.
const (
	viewPublished = "function_published" // id 0 number(4) -> Version
	viewAliases   = "function_aliases"   // id 0 name -> Alias
)

// Version is a published version of a function.
type Version struct {
	FunctionID string `json:"function_id"`
	Number     int    `json:"version"`
	// Revision is the function's version (count of changes) it froze.
	Revision int `json:"revision"`
	function.Spec
	ImageDigest string    `json:"image_digest"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Alias is a name for a version of a function.
type Alias struct {
	FunctionID string `json:"function_id"`
	Name       string `json:"name"`
	function.AliasSpec
	// Revision counts the alias's changes, from 1.
	Revision  int       `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Function returns the function as version v runs it: its frozen settings,
// the image by digest, and the number to tell its containers apart.
func (v Version) Function(live Function) Function {
	f := live
	f.Spec, f.Version, f.Published = v.Spec, v.Revision, v.Number
	f.Image = v.ImageDigest
	return f
}

func aliasKey(fnID, name string) []byte { return indexKey(fnID, name) }

// lastVersion is the number of f's newest published version, 0 if none.
func lastVersion(r eventlog.ViewReader, fnID string) (n int, err error) {
	err = r.Scan(viewPublished, indexKey(fnID, ""), nil, true, func(_, v []byte) bool {
		var pv Version
		if err = json.Unmarshal(v, &pv); err == nil {
			n = pv.Number
		}
		return false
	})
	return n, err
}

// PublishedVersion returns version n of function fnID.
func PublishedVersion(r eventlog.ViewReader, fnID string, n int) (Version, error) {
	return getJSON[Version](r, viewPublished, versionKey(fnID, n), fmt.Sprintf("version %d of function %s", n, fnID))
}

// AliasOf returns alias name of function fnID.
func AliasOf(r eventlog.ViewReader, fnID, name string) (Alias, error) {
	return getJSON[Alias](r, viewAliases, aliasKey(fnID, name), fmt.Sprintf("alias %q of function %s", name, fnID))
}

// CheckVersionRef is nil when ref names $LATEST or a published version of
// fnID.
func CheckVersionRef(r eventlog.ViewReader, fnID, ref string) error {
	if ref == function.Latest {
		return nil
	}
	n, err := strconv.Atoi(ref)
	if err != nil {
		return fmt.Errorf("%w: version %q", ErrInconsistent, ref)
	}
	if r.Get(viewPublished, versionKey(fnID, n)) == nil {
		return fmt.Errorf("%w: function %s has no version %d", ErrInconsistent, fnID, n)
	}
	return nil
}

func (b *batch) versionPublished(e *eventlog.Event) error {
	var p VersionPublished
	if err := decode(e, &p); err != nil {
		return err
	}
	f, err := b.liveFunction(e.FunctionID)
	if err != nil {
		return err
	}
	last, err := lastVersion(b.tx, f.ID)
	if err != nil {
		return err
	}
	if p.Number != last+1 || p.ImageDigest == "" {
		return fmt.Errorf("%w: function %s version %d published after %d", ErrInconsistent, f.ID, p.Number, last)
	}
	return putJSON(b.tx, viewPublished, versionKey(f.ID, p.Number), Version{
		FunctionID: f.ID, Number: p.Number, Revision: p.Revision, Spec: p.Spec,
		ImageDigest: p.ImageDigest, Description: p.Description, CreatedAt: e.Time,
	})
}

func (b *batch) aliasSet(e *eventlog.Event) error {
	var p AliasSet
	if err := decode(e, &p); err != nil {
		return err
	}
	if _, err := b.liveFunction(e.FunctionID); err != nil {
		return err
	}
	if err := CheckVersionRef(b.tx, e.FunctionID, p.FunctionVersion); err != nil {
		return err
	}
	for v := range p.Weights {
		if err := CheckVersionRef(b.tx, e.FunctionID, v); err != nil {
			return err
		}
	}
	a, err := AliasOf(b.tx, e.FunctionID, p.Name)
	switch {
	case e.Type == TypeAliasCreated && err == nil:
		return fmt.Errorf("%w: alias %q of function %s created twice", ErrInconsistent, p.Name, e.FunctionID)
	case e.Type == TypeAliasUpdated && err != nil:
		return fmt.Errorf("%w: alias %q of function %s updated before it was created", ErrInconsistent, p.Name, e.FunctionID)
	case e.Type == TypeAliasCreated:
		a = Alias{FunctionID: e.FunctionID, Name: p.Name, CreatedAt: e.Time}
	}
	a.AliasSpec, a.Revision, a.UpdatedAt = p.AliasSpec, a.Revision+1, e.Time
	return putJSON(b.tx, viewAliases, aliasKey(e.FunctionID, p.Name), a)
}

func (b *batch) aliasDeleted(e *eventlog.Event) error {
	var p AliasDeleted
	if err := decode(e, &p); err != nil {
		return err
	}
	if _, err := AliasOf(b.tx, e.FunctionID, p.Name); err != nil {
		return fmt.Errorf("%w: alias %q of function %s deleted but never created", ErrInconsistent, p.Name, e.FunctionID)
	}
	return b.tx.Delete(viewAliases, aliasKey(e.FunctionID, p.Name))
}

// dropAliases deletes a deleted function's aliases; its versions stay, as
// its other records do, under an id nothing can name again.
func (b *batch) dropAliases(fnID string) error {
	return deletePrefix(b.tx, viewAliases, indexKey(fnID, ""))
}

// deletePrefix deletes the keys of view that start with prefix.
func deletePrefix(tx eventlog.ViewTx, view string, prefix []byte) error {
	var keys [][]byte
	if err := tx.Scan(view, prefix, nil, false, func(k, _ []byte) bool {
		keys = append(keys, append([]byte(nil), k...))
		return true
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(view, k); err != nil {
			return err
		}
	}
	return nil
}

func putJSON(tx eventlog.ViewTx, view string, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(view, key, b)
}

// getJSON decodes the value under key in view; what names it in the
// error when there is none.
func getJSON[T any](r eventlog.ViewReader, view string, key []byte, what string) (T, error) {
	var v T
	b := r.Get(view, key)
	if b == nil {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	err := json.Unmarshal(b, &v)
	return v, err
}

// scanJSON decodes every value in view whose key starts with prefix, in
// key order.
func scanJSON[T any](r eventlog.ViewReader, view string, prefix []byte) ([]T, error) {
	var out []T
	var derr error
	err := r.Scan(view, prefix, nil, false, func(_, b []byte) bool {
		var v T
		if derr = json.Unmarshal(b, &v); derr != nil {
			return false
		}
		out = append(out, v)
		return true
	})
	return out, errors.Join(err, derr)
}

// Versions lists function ref's published versions, oldest first.
func (s *Views) Versions(ref string) ([]Version, error) {
	var out []Version
	err := s.v.View(func(r eventlog.ViewReader) error {
		f, err := FunctionByRef(r, ref)
		if err != nil {
			return err
		}
		out, err = scanJSON[Version](r, viewPublished, indexKey(f.ID, ""))
		return err
	})
	return out, err
}

// Version returns version n of function ref.
func (s *Views) Version(ref string, n int) (v Version, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		f, err := FunctionByRef(r, ref)
		if err != nil {
			return err
		}
		v, err = PublishedVersion(r, f.ID, n)
		return err
	})
	return v, err
}

// Aliases lists function ref's aliases by name.
func (s *Views) Aliases(ref string) ([]Alias, error) {
	var out []Alias
	err := s.v.View(func(r eventlog.ViewReader) error {
		f, err := FunctionByRef(r, ref)
		if err != nil {
			return err
		}
		out, err = scanJSON[Alias](r, viewAliases, indexKey(f.ID, ""))
		return err
	})
	return out, err
}

// Alias returns alias name of function ref.
func (s *Views) Alias(ref, name string) (a Alias, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		f, err := FunctionByRef(r, ref)
		if err != nil {
			return err
		}
		a, err = AliasOf(r, f.ID, name)
		return err
	})
	return a, err
}

// Resolved is a function as one invocation runs it.
type Resolved struct {
	Function
	// Alias is the alias the caller named, if any.
	Alias string
}

// Executed is the published version that runs, "" for $LATEST (as the
// queued event records it).
func (r Resolved) Executed() string {
	if r.Published == 0 {
		return ""
	}
	return r.VersionName()
}

// Resolve returns function ref as qualifier q names it; an alias with a
// second version picks by r, uniform in [0, 1).
func (s *Views) Resolve(ref string, q function.Qualifier, r float64) (res Resolved, err error) {
	if q == (function.Qualifier{}) {
		res.Function, err = s.Function(ref)
		return res, err
	}
	err = s.v.View(func(vr eventlog.ViewReader) error {
		f, err := FunctionByRef(vr, ref)
		if err != nil {
			return err
		}
		n := q.Version
		if q.Alias != "" {
			a, err := AliasOf(vr, f.ID, q.Alias)
			if err != nil {
				return err
			}
			res.Alias = a.Name
			pick := a.Pick(r)
			if pick == function.Latest {
				res.Function = f
				return nil
			}
			if n, err = strconv.Atoi(pick); err != nil {
				return fmt.Errorf("alias %q names version %q: %w", a.Name, pick, ErrInconsistent)
			}
		}
		v, err := PublishedVersion(vr, f.ID, n)
		if err != nil {
			return err
		}
		res.Function = v.Function(f)
		return nil
	})
	return res, err
}
