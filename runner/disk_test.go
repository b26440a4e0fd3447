package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/disktest"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// TestFullDisk fills the log's file system while work runs and waits:
// nothing acknowledged is lost or left without an end, a sync caller whose
// request cannot be recorded hears so, the log reports itself unwritable,
// and once there is room everything runs and is recorded, without a
// restart. Each invocation writes 1 MiB to stdout and to stderr, so that
// its end is an event the full disk cannot take.
func TestFullDisk(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-disk")
	dir := disktest.Small(t, 64<<20)
	f := newServiceLog(t, cli, img.Tag, runner.Options{OutputLimit: 4 << 20}, eventlog.Options{}, filepath.Join(dir, "events.db"))
	queued := f.register(function.Spec{Name: "queued", Concurrency: 1})
	direct := f.register(function.Spec{Name: "direct"})
	ctx := context.Background()
	flood := map[string]any{"sleep_ms": 1500, "flood_bytes": 1 << 20}

	// A sync invocation under way, and async ones: one running, two
	// waiting for it.
	syncErr := make(chan error, 1)
	go func() {
		b, _ := json.Marshal(flood)
		_, err := f.svc.Invoke(ctx, "direct", function.Request{Event: b})
		syncErr <- err
	}()
	var ids []string
	for range 3 {
		ids = append(ids, f.enqueue("queued", flood, "").InvocationID)
	}
	f.waitRunning(direct.ID)
	f.waitRunning(queued.ID)
	filler := disktest.Fill(t, dir)

	// A request the log cannot take is refused, and says why.
	big, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 2<<20)})
	if _, err := f.svc.Invoke(ctx, "direct", function.Request{Event: big}); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Errorf("a sync call on a full disk: %v", err)
	}
	if _, err := f.svc.Enqueue(ctx, "queued", function.Request{Event: big}); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Errorf("an async call on a full disk: %v", err)
	}
	// The invocations under way end, and their ends cannot be written.
	syncErrV := <-syncErr
	var ran interface{ InvocationID() string }
	if !errors.Is(syncErrV, eventlog.ErrUnwritable) || !errors.As(syncErrV, &ran) {
		t.Fatalf("the sync caller whose end could not be recorded: %v", syncErrV)
	}
	// Once the log is known to refuse writes, even a small call is refused
	// at once rather than run into an end it cannot record.
	if _, err := f.svc.Invoke(ctx, "direct", function.Request{Event: []byte(`{}`)}); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Errorf("a small sync call while the log refuses writes: %v", err)
	}
	if err := f.svc.LogHealth(); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Errorf("the log's health on a full disk: %v", err)
	}
	time.Sleep(2 * time.Second)

	disktest.Free(t, filler)
	for i, id := range ids {
		if inv := f.settle(id, 2*time.Minute); inv.Status != "COMPLETED" || inv.Attempts != 1 || len(inv.Result) < 1<<20 {
			t.Errorf("async invocation %d after the disk had room: %s in %d attempts, %d bytes of result: %s", i, inv.Status, inv.Attempts, len(inv.Result), inv.Error)
		}
	}
	// The sync invocation whose caller heard it ran has its end recorded.
	page, _, err := f.svc.Views().Invocations(projections.InvocationQuery{FunctionID: direct.ID})
	if err != nil || len(page) != 1 {
		t.Fatalf("the sync invocations recorded: %v %+v", err, page)
	}
	if page[0].InvocationID != ran.InvocationID() {
		t.Errorf("the caller was told of invocation %s; the one recorded is %s", ran.InvocationID(), page[0].InvocationID)
	}
	if inv := f.settle(page[0].InvocationID, time.Minute); inv.Status != "COMPLETED" || len(inv.Result) < 1<<20 {
		t.Errorf("the sync invocation: %s, %d bytes of result: %s", inv.Status, len(inv.Result), inv.Error)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.svc.LogHealth() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log still unwritable with room on the disk: %v", f.svc.LogHealth())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRecoveryOnAFullDisk restarts the service while its log's disk is
// full, with an attempt cut by the stop and another invocation waiting
// behind it: the recovery cannot record its decisions, so nothing runs on
// a decision the log does not hold; once there is room the decisions land,
// in order, without another restart, and both invocations run.
func TestRecoveryOnAFullDisk(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-disk")
	dir := disktest.Small(t, 32<<20)
	f := newServiceLog(t, cli, img.Tag, runner.Options{}, eventlog.Options{}, filepath.Join(dir, "events.db"))
	fn := f.register(function.Spec{Name: "fn", Concurrency: 1})
	cut := f.enqueue("fn", map[string]any{"sleep_ms": 3000}, "").InvocationID
	waiting := f.enqueue("fn", map[string]any{"name": "waiting"}, "").InvocationID
	f.waitRunning(fn.ID)

	filler := disktest.Fill(t, dir)
	big, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 2<<20)})
	if _, err := f.svc.Enqueue(context.Background(), "fn", function.Request{Event: big}); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Fatalf("an async call on a full disk: %v", err)
	}
	f, err := f.restartRecovering(100*time.Millisecond, runner.Options{})
	if !errors.Is(err, eventlog.ErrUnwritable) {
		t.Fatalf("recovery on a full disk: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	for id, want := range map[string]string{cut: projections.StatusRunning, waiting: projections.StatusPending} {
		if inv, err := f.svc.Views().Invocation(id); err != nil || inv.Status != want {
			t.Errorf("%s while the disk is full: %s %v, want %s", id, inv.Status, err, want)
		}
	}
	if n := f.containers(fn.ID); n != 0 {
		t.Errorf("%d containers started while the log could not record it", n)
	}

	disktest.Free(t, filler)
	for id, attempts := range map[string]int{cut: 2, waiting: 1} {
		if inv := f.settle(id, 2*time.Minute); inv.Status != "COMPLETED" || inv.Attempts != attempts {
			t.Errorf("%s once there is room: %s in %d attempts (want %d): %s", id, inv.Status, inv.Attempts, attempts, inv.Error)
		}
	}
	if got := types(f.events(cut)); got != "queued started retried started completed" {
		t.Errorf("the cut invocation's events: %s", got)
	}
	var decided []projections.RecoveryDecided
	f.log.Read(context.Background(), 0, eventlog.Filter{}, func(e eventlog.Event) error {
		if e.Type == projections.TypeRecoveryDecided {
			var d projections.RecoveryDecided
			json.Unmarshal(e.Data, &d)
			decided = append(decided, d)
		}
		return nil
	})
	if len(decided) != 1 || decided[0].Retried != 1 || decided[0].Requeued != 1 {
		t.Errorf("recovery decisions recorded: %+v", decided)
	}
}
