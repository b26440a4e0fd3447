package http_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/oklog/ulid/v2"
)

// fake stands in for the runner and the views: functions and invocations
// in memory, checked with the function package's rules as the runner
// checks them. An invocation echoes its event. writes counts what a real
// runner would have appended to the log.
type fake struct {
	mu          sync.Mutex
	writes      uint64
	fns         map[string]projections.Function // live, by id
	invs        []projections.Invocation        // oldest first
	images      []string
	engineDown  bool
	logFull     bool
	fail        error // when set, every call that may fail returns it
	lastRequest function.Request
	// record, when set, is what every sync invocation answers.
	record *projections.Invocation
	// delay is how long a sync invocation takes, unless its context ends
	// first.
	delay time.Duration
	// hold, when set, keeps every sync invocation waiting until it is
	// closed, for tests that need a request in flight.
	hold chan struct{}
	// versions are the published versions, by function id; digests the
	// engine's images (tag to ID): an image not in it is not found.
	versions map[string][]projections.Version
	digests  map[string]string
}

var (
	_ lambdahttp.Functions = (*fake)(nil)
	_ lambdahttp.Invoker   = (*fake)(nil)
	_ lambdahttp.Images    = (*fake)(nil)
	_ lambdahttp.Status    = (*fake)(nil)
	_ lambdahttp.Views     = (*fake)(nil)
	_ lambdahttp.Versions  = (*fake)(nil)
)

func newFake() *fake {
	return &fake{fns: map[string]projections.Function{}, versions: map[string][]projections.Version{}, digests: map[string]string{}}
}

// set changes the fake's settings under its lock.
func (f *fake) set(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

// find returns the live function whose id or name is ref.
func (f *fake) find(ref string) (projections.Function, error) {
	if fn, ok := f.fns[ref]; ok {
		return fn, nil
	}
	for _, fn := range f.fns {
		if fn.Name == ref {
			return fn, nil
		}
	}
	return projections.Function{}, fmt.Errorf("function %q: %w", ref, projections.ErrNotFound)
}

func (f *fake) nameTaken(name, except string) bool {
	for _, fn := range f.fns {
		if fn.Name == name && fn.ID != except {
			return true
		}
	}
	return false
}

func (f *fake) Register(_ context.Context, spec function.Spec) (projections.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return projections.Function{}, f.fail
	}
	spec, err := function.Normalize(spec)
	if err != nil {
		return projections.Function{}, err
	}
	if f.nameTaken(spec.Name, "") {
		return projections.Function{}, fmt.Errorf("%w: a function named %q exists already", function.ErrConflict, spec.Name)
	}
	now := time.Now().UTC()
	fn := projections.Function{ID: ulid.Make().String(), Spec: spec, Version: 1, CreatedAt: now, UpdatedAt: now}
	f.fns[fn.ID] = fn
	f.writes++
	return fn, nil
}

func (f *fake) Update(_ context.Context, ref string, patch function.Patch) (projections.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return projections.Function{}, f.fail
	}
	fn, err := f.find(ref)
	if err != nil {
		return fn, err
	}
	spec, err := function.Normalize(patch.Apply(fn.Spec))
	if err != nil {
		return fn, err
	}
	if f.nameTaken(spec.Name, fn.ID) {
		return fn, fmt.Errorf("%w: a function named %q exists already", function.ErrConflict, spec.Name)
	}
	fn.Spec, fn.Version, fn.UpdatedAt = spec, fn.Version+1, time.Now().UTC()
	f.fns[fn.ID] = fn
	f.writes++
	return fn, nil
}

// BuildPackage and UpdatePackage: the fake has no engine to build with;
// the tests of zip packages run on the real one.
func (f *fake) BuildPackage(context.Context, function.Spec, string, []byte) (function.Spec, error) {
	return function.Spec{}, errors.New("the fake builds no images")
}

func (f *fake) UpdatePackage(context.Context, string, []byte) (projections.Function, error) {
	return projections.Function{}, errors.New("the fake builds no images")
}

func (f *fake) Tag(_ context.Context, ref string, set map[string]string, remove []string) (projections.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, err := f.find(ref)
	if err != nil {
		return fn, err
	}
	if fn.Tags, err = function.ChangeTags(fn.Tags, set, remove); err != nil {
		return fn, err
	}
	f.fns[fn.ID] = fn
	f.writes++
	return fn, nil
}

func (f *fake) Delete(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	fn, err := f.find(ref)
	if err != nil {
		return err
	}
	delete(f.fns, fn.ID)
	f.writes++
	return nil
}

func (f *fake) invoke(ref string, req function.Request, async bool) (projections.Invocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRequest = req
	if f.fail != nil {
		return projections.Invocation{}, f.fail
	}
	fn, err := f.find(ref)
	if err != nil {
		return projections.Invocation{}, err
	}
	if req.CallbackURL != "" {
		return projections.Invocation{}, fmt.Errorf("%w: callbacks are off", function.ErrInvalid)
	}
	if req, err = req.Check(); err != nil {
		return projections.Invocation{}, err
	}
	now := time.Now().UTC()
	inv := projections.Invocation{
		InvocationID: ulid.Make().String(), FunctionID: fn.ID, FunctionName: fn.Name, FunctionVersion: fn.Version,
		Async: async, Status: projections.StatusPending, CreatedAt: now, Attempts: 0,
	}
	if !async && f.record != nil {
		return *f.record, nil
	}
	if !async {
		code := 0
		inv.Status, inv.Result, inv.ExitCode, inv.Attempts = projections.StatusCompleted, string(req.Event), &code, 1
		inv.StartedAt, inv.CompletedAt, inv.Timestamp = &now, &now, &now
	}
	f.invs = append(f.invs, inv)
	f.writes++
	return inv, nil
}

func (f *fake) Invoke(ctx context.Context, ref string, req function.Request) (projections.Invocation, error) {
	f.mu.Lock()
	delay, hold := f.delay, f.hold
	f.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return projections.Invocation{}, ctx.Err()
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return projections.Invocation{}, ctx.Err()
		}
	}
	return f.invoke(ref, req, false)
}

func (f *fake) Enqueue(_ context.Context, ref string, req function.Request) (projections.Invocation, error) {
	return f.invoke(ref, req, true)
}

func (f *fake) LoadImage(_ context.Context, r io.Reader) (projections.ImageLoaded, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return projections.ImageLoaded{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return projections.ImageLoaded{}, f.fail
	}
	f.images = append(f.images, "fake:latest")
	f.writes++
	return projections.ImageLoaded{Loaded: []string{"fake:latest"}}, nil
}

func (f *fake) ListImages(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return append([]string{}, f.images...), nil
}

func (f *fake) Health(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.engineDown {
		return fmt.Errorf("%w: ping: no such socket", engine.ErrEngineUnavailable)
	}
	return nil
}

func (f *fake) LogHealth() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.logFull {
		return fmt.Errorf("%w: write /var/lib/minilambda/events.db: no space left on device", eventlog.ErrUnwritable)
	}
	return nil
}

func (f *fake) Head() (uint64, eventlog.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, sha256.Sum256(fmt.Append(nil, f.writes))
}

func (f *fake) Function(ref string) (projections.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.find(ref)
}

func (f *fake) Functions() ([]projections.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []projections.Function{}
	for _, fn := range f.fns {
		out = append(out, fn)
	}
	slices.SortFunc(out, func(a, b projections.Function) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (f *fake) Invocation(id string) (projections.Invocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, inv := range f.invs {
		if inv.InvocationID == id {
			return inv, nil
		}
	}
	return projections.Invocation{}, fmt.Errorf("invocation %q: %w", id, projections.ErrNotFound)
}

// InvocationSpan is not the fake's: it keeps no log.
func (f *fake) InvocationSpan(id string) (uint64, uint64, error) {
	return 0, 0, errors.New("the fake keeps no event log")
}

// Invocations lists newest first, without paging; a cursor must be an
// invocation id.
func (f *fake) Invocations(q projections.InvocationQuery) ([]projections.Invocation, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q.Cursor != "" && !slices.ContainsFunc(f.invs, func(inv projections.Invocation) bool { return inv.InvocationID == q.Cursor }) {
		return nil, "", projections.ErrBadCursor
	}
	out := []projections.Invocation{}
	for i := len(f.invs) - 1; i >= 0; i-- {
		inv := f.invs[i]
		if (q.FunctionID == "" || inv.FunctionID == q.FunctionID) && (q.Status == "" || inv.Status == q.Status) {
			out = append(out, inv)
		}
	}
	return out, "", nil
}

// PublishVersion publishes as the runner does: the image must be in the
// fake's engine, and have the digest the request names, if any.
func (f *fake) PublishVersion(_ context.Context, ref string, p function.Publish) (projections.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := p.Check(); err != nil {
		return projections.Version{}, err
	}
	fn, err := f.find(ref)
	if err != nil {
		return projections.Version{}, err
	}
	digest, ok := f.digests[fn.Image]
	if !ok {
		return projections.Version{}, fmt.Errorf("%w: image %q is not in the fake engine", function.ErrInvalid, fn.Image)
	}
	if !p.Allows(digest) {
		return projections.Version{}, fmt.Errorf("%w: the image is %s, not %s", function.ErrInvalid, digest, p.ImageDigest)
	}
	v := projections.Version{FunctionID: fn.ID, Number: len(f.versions[fn.ID]) + 1, Revision: fn.Version, Spec: fn.Spec,
		ImageDigest: digest, Description: p.Description, CreatedAt: time.Now().UTC()}
	f.versions[fn.ID] = append(f.versions[fn.ID], v)
	f.writes++
	return v, nil
}

// The fake keeps no aliases.
func (f *fake) PutAlias(context.Context, string, string, function.AliasSpec, bool) (projections.Alias, error) {
	return projections.Alias{}, errors.New("the fake keeps no aliases")
}

func (f *fake) DeleteAlias(context.Context, string, string) error {
	return errors.New("the fake keeps no aliases")
}

func (f *fake) Aliases(string) ([]projections.Alias, error) { return nil, nil }

func (f *fake) Alias(ref, name string) (projections.Alias, error) {
	return projections.Alias{}, fmt.Errorf("alias %q: %w", name, projections.ErrNotFound)
}

func (f *fake) Versions(ref string) ([]projections.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, err := f.find(ref)
	if err != nil {
		return nil, err
	}
	return slices.Clone(f.versions[fn.ID]), nil
}

func (f *fake) Version(ref string, n int) (projections.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, err := f.find(ref)
	if err != nil {
		return projections.Version{}, err
	}
	if vs := f.versions[fn.ID]; n >= 1 && n <= len(vs) {
		return vs[n-1], nil
	}
	return projections.Version{}, fmt.Errorf("version %d: %w", n, projections.ErrNotFound)
}

func (f *fake) ImageID(_ context.Context, image string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.digests[image]; ok {
		return id, nil
	}
	return "", fmt.Errorf("%w: %q", engine.ErrImageNotFound, image)
}
