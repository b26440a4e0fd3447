package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/minilambda/minilambda/eventlog"
)

// ErrNotFound means no live function or no invocation has that id or name.
var ErrNotFound = errors.New("not found")

// ErrBadCursor means a paging cursor was not one this package handed out.
var ErrBadCursor = errors.New("invalid paging cursor")

// Viewer is what the read API needs of the log.
type Viewer interface {
	View(fn func(eventlog.ViewReader) error) error
}

// Views answers queries from the stored views.
type Views struct {
	v Viewer
}

// NewViews returns the read API over log.
func NewViews(log Viewer) *Views { return &Views{v: log} }

// FunctionByRef returns the live function whose id or name is ref.
func FunctionByRef(r eventlog.ViewReader, ref string) (Function, error) {
	v := r.Get(viewFunctions, []byte(ref))
	if v == nil {
		if id := r.Get(viewFunctionNames, []byte(ref)); id != nil {
			v = r.Get(viewFunctions, id)
		}
	}
	if v == nil {
		return Function{}, fmt.Errorf("function %q: %w", ref, ErrNotFound)
	}
	var f Function
	err := json.Unmarshal(v, &f)
	return f, err
}

// NameTaken reports whether a live function has the name.
func NameTaken(r eventlog.ViewReader, name string) bool {
	return r.Get(viewFunctionNames, []byte(name)) != nil
}

// KnownFunction reports whether a function with the id was ever
// registered, including deleted ones.
func KnownFunction(r eventlog.ViewReader, id string) bool {
	found := false
	_ = r.Scan(viewFunctionVersions, indexKey(id, ""), nil, false, func(k, v []byte) bool {
		found = true
		return false
	})
	return found
}

// Function returns the live function whose id or name is ref.
func (s *Views) Function(ref string) (f Function, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		f, err = FunctionByRef(r, ref)
		return err
	})
	return f, err
}

// Functions lists the live functions, oldest first.
func (s *Views) Functions() ([]Function, error) {
	out := []Function{}
	err := s.v.View(func(r eventlog.ViewReader) error {
		return r.Scan(viewFunctions, nil, nil, false, func(k, v []byte) bool {
			var f Function
			if err := json.Unmarshal(v, &f); err == nil {
				out = append(out, f)
			}
			return true
		})
	})
	slices.SortStableFunc(out, func(a, b Function) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// FunctionVersions returns every recorded version of a function, deleted
// or not, oldest first.
func (s *Views) FunctionVersions(id string) ([]Function, error) {
	var out []Function
	err := s.v.View(func(r eventlog.ViewReader) error {
		var derr error
		err := r.Scan(viewFunctionVersions, indexKey(id, ""), nil, false, func(k, v []byte) bool {
			var f Function
			derr = json.Unmarshal(v, &f)
			out = append(out, f)
			return derr == nil
		})
		return errors.Join(err, derr)
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("function %q: %w", id, ErrNotFound)
	}
	return out, err
}

// Invocation returns one invocation record.
func (s *Views) Invocation(id string) (inv Invocation, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		inv, err = readInvocation(r, []byte(id), nil)
		return err
	})
	return inv, err
}

// Queued returns what an invocation was queued with: the event, the
// timeout and the callback, for running it again after a restart.
func (s *Views) Queued(id string) (q InvocationQueued, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		v := r.Get(viewInvocations, recordKey(id))
		if v == nil {
			return fmt.Errorf("invocation %q: %w", id, ErrNotFound)
		}
		var rec storedInvocation
		if err := rec.unmarshal(id, v); err != nil {
			return err
		}
		e, err := r.Event(rec.QueuedSeq)
		if err != nil {
			return fmt.Errorf("invocation %s: %w", id, err)
		}
		return json.Unmarshal(e.Data, &q)
	})
	return q, err
}

// readInvocation reads a record, whose stored bytes v the caller may have
// in hand already, and the outputs from the event that ended it.
func readInvocation(r eventlog.ViewReader, id, v []byte) (Invocation, error) {
	if v == nil {
		v = r.Get(viewInvocations, recordKey(string(id)))
	}
	if v == nil {
		return Invocation{}, fmt.Errorf("invocation %q: %w", id, ErrNotFound)
	}
	var rec storedInvocation
	if err := rec.unmarshal(string(id), v); err != nil {
		return Invocation{}, err
	}
	if rec.EndSeq != 0 {
		e, err := r.Event(rec.EndSeq)
		if err != nil {
			return Invocation{}, fmt.Errorf("invocation %s: %w", id, err)
		}
		var p InvocationEnded
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return Invocation{}, fmt.Errorf("invocation %s: %w", id, err)
		}
		rec.Result, rec.Logs = p.Result, p.Logs
	}
	return rec.Invocation, nil
}

// InvocationQuery filters and pages the invocation list.
type InvocationQuery struct {
	FunctionID string // exact function id; empty for all
	Status     string // one of the four statuses; empty for all
	Limit      int    // 1..MaxLimit; DefaultLimit when 0
	Cursor     string // from a previous page's next cursor
}

// Paging bounds of InvocationQuery.Limit.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Invocations lists invocations newest first. next is the cursor of the
// following page, empty on the last page.
func (s *Views) Invocations(q InvocationQuery) (page []Invocation, next string, err error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	if q.Cursor != "" && !validCursor(q.Cursor) {
		return nil, "", ErrBadCursor
	}
	prefix := recordKey("")
	indexed := q.FunctionID != "" || q.Status != ""
	switch {
	case q.FunctionID != "":
		prefix = functionKey(q.FunctionID, "")
	case q.Status != "":
		prefix = statusKey(q.Status, "")
	}
	var start []byte
	if q.Cursor != "" {
		start = append(append([]byte(nil), prefix...), q.Cursor...)
	}
	page = []Invocation{}
	err = s.v.View(func(r eventlog.ViewReader) error {
		var derr error
		err := r.Scan(viewInvocations, prefix, start, true, func(k, v []byte) bool {
			id := k[len(prefix):]
			if string(id) == q.Cursor {
				return true
			}
			if len(page) == q.Limit {
				next = page[len(page)-1].InvocationID
				return false
			}
			var inv Invocation
			if indexed {
				v = nil // an index entry; the record is elsewhere
			}
			if inv, derr = readInvocation(r, id, v); derr != nil {
				return false
			}
			if q.Status == "" || inv.Status == q.Status {
				page = append(page, inv)
			}
			return true
		})
		return errors.Join(err, derr)
	})
	return page, next, err
}

// validCursor accepts invocation ids: ULIDs, 26 characters of Crockford's
// base32.
func validCursor(c string) bool {
	if len(c) != 26 {
		return false
	}
	for _, r := range c {
		if !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}
