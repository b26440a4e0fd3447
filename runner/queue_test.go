package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/docker"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// fixture is a service on the real engine and a fresh log, started, with
// its control plane; at cleanup it stops, audits its log and checks that no
// container of its is left.
type fixture struct {
	t        testing.TB
	svc      *runner.Service
	ctl      *control.Plane
	log      *eventlog.Log
	cli      *client.Client
	instance string
	image    string
}

func newService(t testing.TB, cli *client.Client, image string, opts runner.Options) *fixture {
	t.Helper()
	return newServiceLog(t, cli, image, opts, eventlog.Options{}, "")
}

// newServiceLog is newService with options for its log, and the log at
// path (in a fresh directory when empty); the projector is always the
// real one.
func newServiceLog(t testing.TB, cli *client.Client, image string, opts runner.Options, logOpts eventlog.Options, path string) *fixture {
	t.Helper()
	logOpts.Projector = projections.Projector{}
	if path == "" {
		path = filepath.Join(t.TempDir(), "events.db")
	}
	log, err := eventlog.Open(path, logOpts)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, instance := dockertest.UniqueLabel(t)
	opts.Log, opts.Engine, opts.Instance = log, driver, instance
	opts.InitDir = lambdatest.InitDir(t)
	if opts.RetryBase == 0 {
		opts.RetryBase = 100 * time.Millisecond
	}
	svc, err := runner.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctl := newControl(t, log, driver, svc)
	svc.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		svc.Stop(ctx)
		svc.Wait()
		if _, err := log.Verify(context.Background(), projections.Projector{}, nil); err != nil {
			t.Errorf("audit: %v", err)
		}
		log.Close()
		dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instance)
	})
	return &fixture{t: t, svc: svc, ctl: ctl, log: log, cli: cli, instance: instance, image: image}
}

// newControl is the control plane over log and driver, with svc its runner,
// as a server wires it.
func newControl(t testing.TB, log *eventlog.Log, driver control.Engine, svc *runner.Service) *control.Plane {
	t.Helper()
	ctl, err := control.New(control.Options{Log: log, Engine: driver, Runner: svc, Views: svc.Views()})
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func (f *fixture) register(spec function.Spec) projections.Function {
	f.t.Helper()
	if spec.Image == "" {
		spec.Image = f.image
	}
	fn, err := f.ctl.Register(context.Background(), spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return fn
}

func (f *fixture) enqueue(ref string, event any, callback string) projections.Invocation {
	f.t.Helper()
	b, _ := json.Marshal(event)
	inv, err := f.svc.Enqueue(context.Background(), ref, function.Request{Event: b, CallbackURL: callback})
	if err != nil {
		f.t.Fatal(err)
	}
	if inv.Status != projections.StatusPending || !inv.Async {
		f.t.Fatalf("queued record %+v", inv)
	}
	return inv
}

// settle waits until the invocation has ended and returns its record.
func (f *fixture) settle(id string, within time.Duration) projections.Invocation {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		inv, err := f.svc.Views().Invocation(id)
		if err != nil {
			f.t.Fatal(err)
		}
		if inv.Status == projections.StatusCompleted || inv.Status == projections.StatusFailed {
			return inv
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("invocation %s still %s after %v: %+v", id, inv.Status, within, inv)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// restart stops f's service, letting attempts under way run for grace,
// and starts another on the same log and engine, as a server restart does:
// recovery first, then the workers.
func (f *fixture) restart(grace time.Duration, opts runner.Options) *fixture {
	f.t.Helper()
	next, err := f.restartRecovering(grace, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return next
}

// restartRecovering is restart, returning what the recovery reported
// instead of failing the test on it.
func (f *fixture) restartRecovering(grace time.Duration, opts runner.Options) (*fixture, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	f.svc.Stop(ctx)
	f.svc.Wait()
	driver, err := docker.New(f.cli, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	opts.Log, opts.Engine, opts.Instance = f.log, driver, f.instance
	opts.InitDir = lambdatest.InitDir(f.t)
	if opts.RetryBase == 0 {
		opts.RetryBase = 100 * time.Millisecond
	}
	svc, err := runner.New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctl := newControl(f.t, f.log, driver, svc)
	recoverErr := svc.Recover(context.Background())
	svc.Start(context.Background())
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		svc.Stop(ctx)
		svc.Wait()
	})
	next := *f
	next.svc, next.ctl = svc, ctl
	return &next, recoverErr
}

// waitRunning returns once an invocation of function fnID is RUNNING.
func (f *fixture) waitRunning(fnID string) {
	f.t.Helper()
	f.waitRunningN(fnID, 1)
}

// waitRunningN returns once n invocations of function fnID are RUNNING.
func (f *fixture) waitRunningN(fnID string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, _, err := f.svc.Views().Invocations(projections.InvocationQuery{FunctionID: fnID, Status: projections.StatusRunning})
		if err != nil {
			f.t.Fatal(err)
		}
		if len(page) >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d invocations of %s running, not %d", len(page), fnID, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// containers counts the containers, in any state, of function fnID that
// this fixture's service created, once those it has done with are gone.
func (f *fixture) containers(fnID string) int {
	f.t.Helper()
	f.svc.Settle()
	list, err := f.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", runner.LabelInstance+"="+f.instance),
		filters.Arg("label", docker.LabelFunction+"="+fnID),
	)})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(list)
}

func (f *fixture) events(id string) []eventlog.Event {
	var out []eventlog.Event
	f.log.Read(context.Background(), 0, eventlog.Filter{InvocationID: id}, func(e eventlog.Event) error {
		out = append(out, e)
		return nil
	})
	return out
}

func types(events []eventlog.Event) string {
	var t []string
	for _, e := range events {
		t = append(t, strings.TrimPrefix(e.Type, "invocation."))
	}
	return strings.Join(t, " ")
}

func TestAsync(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-fn")

	t.Run("completes", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "fn"})
		inv := f.settle(f.enqueue("fn", map[string]string{"name": "async"}, "").InvocationID, time.Minute)
		if inv.Status != "COMPLETED" || inv.Result != "{\"message\":\"Hello, async!\"}\n" || inv.Attempts != 1 {
			t.Fatalf("record %+v", inv)
		}
		if got := types(f.events(inv.InvocationID)); got != "queued started completed" {
			t.Fatalf("events: %s", got)
		}
	})

	t.Run("retries until attempts run out", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "fn", MaxAttempts: 3})
		inv := f.settle(f.enqueue("fn", map[string]any{"exit": 3}, "").InvocationID, time.Minute)
		if inv.Status != "FAILED" || inv.Attempts != 3 || inv.ErrorType != "function_error" || !strings.Contains(inv.Error, "no retries left") || !strings.Contains(inv.Logs, "boom") {
			t.Fatalf("record %+v", inv)
		}
		if got := types(f.events(inv.InvocationID)); got != "queued started retried started retried started failed" {
			t.Fatalf("events: %s", got)
		}
	})

	t.Run("a retry succeeds", func(t *testing.T) {
		// The first attempt fails unless its container took over four
		// seconds to start; the second, five seconds after it, succeeds.
		f := newService(t, cli, img.Tag, runner.Options{RetryBase: 5 * time.Second})
		f.register(function.Spec{Name: "fn"})
		until := time.Now().Add(4 * time.Second).UnixMilli()
		id := f.enqueue("fn", map[string]any{"fail_until": until, "name": "late"}, "").InvocationID
		// While it waits for its second attempt, the record says why.
		deadline := time.Now().Add(30 * time.Second)
		for {
			inv, _ := f.svc.Views().Invocation(id)
			if inv.NextAttemptAt != nil {
				if inv.Status != "PENDING" || inv.Attempts != 1 || inv.ErrorType != "function_error" || !strings.Contains(inv.Logs, "too early") {
					t.Fatalf("between attempts: %+v", inv)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never retried: %+v", inv)
			}
			time.Sleep(10 * time.Millisecond)
		}
		inv := f.settle(id, time.Minute)
		if inv.Status != "COMPLETED" || inv.Attempts != 2 || inv.Error != "" || inv.ErrorType != "" || inv.NextAttemptAt != nil {
			t.Fatalf("record %+v", inv)
		}
	})

	t.Run("max event age", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{MaxEventAge: time.Second, RetryBase: 2 * time.Second})
		f.register(function.Spec{Name: "fn"})
		inv := f.settle(f.enqueue("fn", map[string]any{"exit": 1}, "").InvocationID, time.Minute)
		if inv.Status != "FAILED" || inv.Attempts != 1 || !strings.Contains(inv.Error, "maximum event age") {
			t.Fatalf("record %+v", inv)
		}
	})

	t.Run("order of arrival within concurrency", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{Workers: 4})
		f.register(function.Spec{Name: "fn", Concurrency: 1})
		var ids []string
		for range 4 {
			ids = append(ids, f.enqueue("fn", map[string]any{"sleep_ms": 200}, "").InvocationID)
		}
		var prev projections.Invocation
		for i, id := range ids {
			inv := f.settle(id, 2*time.Minute)
			if inv.Status != "COMPLETED" {
				t.Fatalf("%d: %+v", i, inv)
			}
			if i > 0 && inv.StartedAt.Before(*prev.CompletedAt) {
				t.Fatalf("invocation %d started at %v, before %d ended at %v: concurrency 1 not kept", i, inv.StartedAt, i-1, prev.CompletedAt)
			}
			prev = inv
		}
	})

	t.Run("callbacks", func(t *testing.T) {
		var mu sync.Mutex
		got := map[string]projections.Invocation{}
		hits := map[string]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var inv projections.Invocation
			json.Unmarshal(b, &inv)
			mu.Lock()
			defer mu.Unlock()
			hits[r.URL.Path]++
			if r.URL.Path == "/broken" {
				w.WriteHeader(500)
				return
			}
			got[inv.InvocationID] = inv
		}))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		f := newService(t, cli, img.Tag, runner.Options{CallbackHosts: []string{u.Host}, CallbackTries: 2})
		f.register(function.Spec{Name: "fn", CallbackURL: srv.URL + "/fn"})

		ok := f.settle(f.enqueue("fn", map[string]string{"name": "cb"}, "").InvocationID, time.Minute)
		failed := f.settle(f.enqueue("fn", map[string]any{"exit": 9}, srv.URL+"/broken").InvocationID, time.Minute)
		f.svc.Stop(context.Background()) // waits for callbacks
		mu.Lock()
		defer mu.Unlock()
		if cb := got[ok.InvocationID]; cb.Status != "COMPLETED" || cb.Result != ok.Result {
			t.Errorf("callback carried %+v", cb)
		}
		if hits["/broken"] != 2*1 {
			t.Errorf("a failing callback was tried %d times, want 2", hits["/broken"])
		}
		for _, tc := range []struct {
			id, want string
		}{{ok.InvocationID, `"status_code":200`}, {failed.InvocationID, `"attempts":2,"status_code":500`}} {
			evs := f.events(tc.id)
			last := evs[len(evs)-1]
			if last.Type != projections.TypeInvocationCallback || !strings.Contains(string(last.Data), tc.want) {
				t.Errorf("callback event %s %s, want %s", last.Type, last.Data, tc.want)
			}
		}

		for _, bad := range []string{"http://elsewhere.example:9/x", "ftp://" + u.Host + "/", "not a url"} {
			_, err := f.svc.Enqueue(context.Background(), "fn", function.Request{CallbackURL: bad})
			if !errors.Is(err, function.ErrInvalid) {
				t.Errorf("callback %q: %v", bad, err)
			}
		}
	})

	// The operator's allow-list is checked again when a callback is sent:
	// a host allowed when the invocation was accepted but not after a
	// restart is not called.
	t.Run("callbacks follow the allow-list of the server that sends them", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		f := newService(t, cli, img.Tag, runner.Options{CallbackHosts: []string{u.Host}})
		fn := f.register(function.Spec{Name: "fn"})
		id := f.enqueue("fn", map[string]any{"sleep_ms": 2000}, srv.URL+"/hook").InvocationID
		f.waitRunning(fn.ID)
		// Cut the attempt under way: it is retried after the restart.
		f = f.restart(100*time.Millisecond, runner.Options{})
		if inv := f.settle(id, time.Minute); inv.Status != "COMPLETED" || inv.Attempts != 2 {
			t.Fatalf("after the restart: %+v", inv)
		}
		f.svc.Stop(context.Background()) // waits for callbacks
		evs := f.events(id)
		last := evs[len(evs)-1]
		if last.Type != projections.TypeInvocationCallback || !strings.Contains(string(last.Data), "not sent: callbacks are off") || hits.Load() != 0 {
			t.Errorf("callback event %s %s, %d deliveries", last.Type, last.Data, hits.Load())
		}
	})

	// A callback waiting for its next try does not hold shutdown up: when
	// Stop's grace ends it gives up, and its record says so.
	t.Run("a callback's backoff ends at shutdown", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(500)
		}))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		f := newService(t, cli, img.Tag, runner.Options{CallbackHosts: []string{u.Host}, CallbackTries: 3, RetryBase: time.Hour})
		f.register(function.Spec{Name: "fn", MaxAttempts: 1})
		id := f.enqueue("fn", map[string]string{"name": "cb"}, srv.URL+"/down").InvocationID
		f.settle(id, time.Minute)
		deadline := time.Now().Add(30 * time.Second)
		for hits.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the callback was never tried")
			}
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		begin := time.Now()
		f.svc.Stop(ctx)
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("Stop took %v with a callback waiting an hour to retry", d)
		}
		evs := f.events(id)
		last := evs[len(evs)-1]
		if last.Type != projections.TypeInvocationCallback || !strings.Contains(string(last.Data), `"attempts":1,"status_code":500`) ||
			!strings.Contains(string(last.Data), "stopped before another try") || hits.Load() != 1 {
			t.Errorf("callback event %s %s after %d tries", last.Type, last.Data, hits.Load())
		}
	})
}
