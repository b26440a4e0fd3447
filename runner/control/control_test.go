package control_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/engine"
)

// fakeRunner records what the control plane tells the data plane.
type fakeRunner struct {
	mu         sync.Mutex
	retired    []string // "id" or "id deleted"
	reschedule int
}

var _ control.Runner = (*fakeRunner)(nil)

func (r *fakeRunner) CheckCallback(url string) error {
	if url != "" {
		return function.ErrInvalid
	}
	return nil
}

func (r *fakeRunner) Retire(fnID string, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted {
		fnID += " deleted"
	}
	r.retired = append(r.retired, fnID)
}

func (r *fakeRunner) Reschedule() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reschedule++
}

// fakeEngine has the images of its map, by tag.
type fakeEngine map[string]string

var _ control.Engine = fakeEngine(nil)

func (e fakeEngine) Images(context.Context) (map[string]string, error) { return e, nil }

func (e fakeEngine) ImageID(_ context.Context, ref string) (string, error) {
	if id, ok := e[ref]; ok {
		return id, nil
	}
	return "", engine.ErrImageNotFound
}

func (e fakeEngine) LoadImage(context.Context, io.Reader) ([]string, error) {
	return nil, errors.New("not here")
}

func newPlane(t *testing.T) (*control.Plane, *fakeRunner) {
	t.Helper()
	log, err := eventlog.Open(filepath.Join(t.TempDir(), "events.db"), eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	r := &fakeRunner{}
	p, err := control.New(control.Options{Log: log, Engine: fakeEngine{"img:1": "sha256:1", "img:2": "sha256:2"}, Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}

// TestRunnerHears checks the one seam between the planes: updates and
// deletes retire the function's containers, schedule changes reschedule,
// and the runner's callback allow-list decides.
func TestRunnerHears(t *testing.T) {
	ctx := context.Background()
	p, r := newPlane(t)
	if _, err := control.New(control.Options{}); err == nil {
		t.Error("New without a log, an engine and a runner succeeded")
	}
	if _, err := p.Register(ctx, function.Spec{Name: "fn", Image: "img:1", CallbackURL: "http://elsewhere/"}); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("a callback the runner refuses: %v", err)
	}
	if _, err := p.Register(ctx, function.Spec{Name: "absent", Image: "img:9"}); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("an image the engine lacks: %v", err)
	}
	fn, err := p.Register(ctx, function.Spec{Name: "fn", Image: "img:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.retired) != 0 {
		t.Errorf("a registration retired %v", r.retired)
	}
	img := "img:2"
	if _, err := p.Update(ctx, "fn", function.Patch{Image: &img}); err != nil {
		t.Fatal(err)
	}
	v, err := p.PublishVersion(ctx, "fn", function.Publish{})
	if err != nil || v.Number != 1 || v.ImageDigest != "sha256:2" {
		t.Fatalf("published %+v, %v", v, err)
	}
	sc, err := p.CreateSchedule(ctx, "fn", function.ScheduleSpec{Cron: "@every 5m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteSchedule(ctx, "fn", sc.ID); err != nil {
		t.Fatal(err)
	}
	if r.reschedule != 2 {
		t.Errorf("%d reschedules after a schedule's creation and removal, want 2", r.reschedule)
	}
	if err := p.Delete(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if want := []string{fn.ID, fn.ID + " deleted"}; !slices.Equal(r.retired, want) {
		t.Errorf("retired %v, want %v", r.retired, want)
	}
	if err := p.Delete(ctx, "fn"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("a second delete: %v", err)
	}
	if len(r.retired) != 2 {
		t.Errorf("a failed delete retired: %v", r.retired)
	}
	tags, err := p.ListImages(ctx)
	if err != nil || !slices.Equal(tags, []string{"img:1", "img:2"}) {
		t.Errorf("images %v, %v", tags, err)
	}
}

func (e fakeEngine) BuildImage(context.Context, io.Reader, string, map[string]string) (string, error) {
	return "", errors.New("not here")
}
