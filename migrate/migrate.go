// Package migrate imports the functions.json of the JSON-file version of
// Mini Lambda into the event log, as function.registered events marked
// imported. Ids, names, images and creation instants are kept; the import
// is one atomic append, so a bad file writes nothing, and running it again
// appends nothing new.
package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// MaxFileSize bounds the legacy file: the JSON-file version kept every
// function in memory, so a real one is far smaller.
const MaxFileSize = 64 << 20

// ErrBadFile means the legacy file cannot be imported; the message names
// the entry and what is wrong with it.
var ErrBadFile = errors.New("bad functions.json")

// ErrChanged means the log changed between planning and appending the
// import; running it again is safe.
var ErrChanged = errors.New("the event log changed during the import; run it again")

// Legacy is one function of the legacy file.
type Legacy struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Image     string    `json:"image"`
	CreatedAt time.Time `json:"created_at"`
}

// Parse reads a legacy functions.json: an object mapping each id to
// {"id", "name", "image", "created_at"}. It returns the entries oldest
// first, or an error naming the first bad entry.
func Parse(r io.Reader) ([]Legacy, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrBadFile, MaxFileSize>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: want a JSON object mapping ids to functions", ErrBadFile)
	}
	var out []Legacy
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: after %d entries: %v", ErrBadFile, len(out), err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, fmt.Errorf("%w: entry %q appears twice", ErrBadFile, key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: entry %q: %v", ErrBadFile, key, err)
		}
		f, err := parseEntry(key, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %q: %v", ErrBadFile, key, err)
		}
		out = append(out, f)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", ErrBadFile)
	}
	slices.SortFunc(out, func(a, b Legacy) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func parseEntry(key string, raw json.RawMessage) (Legacy, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Legacy{}, fmt.Errorf("want an object with id, name, image and created_at")
	}
	str := func(name string) (string, error) {
		v, ok := fields[name]
		if !ok {
			return "", fmt.Errorf("missing %q", name)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("%q is not a string", name)
		}
		if s == "" {
			return "", fmt.Errorf("%q is empty", name)
		}
		return s, nil
	}
	var f Legacy
	var err error
	if f.ID, err = str("id"); err != nil {
		return f, err
	}
	if f.Name, err = str("name"); err != nil {
		return f, err
	}
	if f.Image, err = str("image"); err != nil {
		return f, err
	}
	ts, err := str("created_at")
	if err != nil {
		return f, err
	}
	if f.ID != key {
		return f, fmt.Errorf("id %q differs from its key", f.ID)
	}
	if err := function.CheckID(f.ID); err != nil {
		return f, err
	}
	if err := function.CheckName(f.Name); err != nil {
		return f, err
	}
	if err := function.CheckImage(f.Image); err != nil {
		return f, err
	}
	if f.CreatedAt, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return f, fmt.Errorf("created_at %q is not an RFC 3339 time with a UTC offset", ts)
	}
	return f, nil
}

// Log is what Import needs of the event log.
type Log interface {
	View(fn func(eventlog.ViewReader) error) error
	AppendIf(ctx context.Context, cond func(eventlog.ViewReader) error, events ...eventlog.Event) ([]eventlog.Event, error)
}

// Report says what an import did.
type Report struct {
	Imported []Imported // registered now, oldest first
	Skipped  int        // already in the log (also when deleted since)
}

// Imported is one function an import registered.
type Imported struct {
	ID, Name, OriginalName string
}

// Import registers the entries the log does not know yet, all in one
// append. A name already taken, by a live function or by an older entry of
// the file, is given the suffix "-" and the first 8 characters of the id
// (more if that is taken too); the event keeps the original name.
func Import(ctx context.Context, log Log, entries []Legacy) (Report, error) {
	var rep Report
	var events []eventlog.Event
	plan := func(r eventlog.ViewReader) error {
		rep, events = Report{}, events[:0]
		taken := map[string]bool{}
		for _, f := range entries {
			if projections.KnownFunction(r, f.ID) {
				rep.Skipped++
				continue
			}
			name := f.Name
			for n := 8; taken[name] || projections.NameTaken(r, name); n++ {
				if n > len(f.ID) {
					return fmt.Errorf("cannot find a free name for %s (%s)", f.ID, f.Name)
				}
				name = fmt.Sprintf("%s-%s", truncate(f.Name, function.MaxNameLen-1-n), f.ID[:n])
			}
			taken[name] = true
			p := projections.FunctionRegistered{
				Spec:      function.Spec{Name: name, Image: f.Image},
				CreatedAt: f.CreatedAt,
				Imported:  true,
			}
			if name != f.Name {
				p.OriginalName = f.Name
			}
			e, err := projections.NewFunctionRegistered(f.ID, p)
			if err != nil {
				return err
			}
			events = append(events, e)
			rep.Imported = append(rep.Imported, Imported{ID: f.ID, Name: name, OriginalName: p.OriginalName})
		}
		return nil
	}
	if err := log.View(plan); err != nil {
		return Report{}, err
	}
	if len(events) == 0 {
		return rep, nil
	}
	planned := rep
	_, err := log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		// The plan must still hold inside the transaction.
		if err := plan(r); err != nil {
			return err
		}
		if !slices.Equal(rep.Imported, planned.Imported) {
			return ErrChanged
		}
		return nil
	}, events...)
	if err != nil {
		return Report{}, err
	}
	return rep, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
