package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type hotAnswer struct {
	Message string
	Count   int
	Pid     int
	Procs   int // GOMAXPROCS, which Go sizes from the CPU quota
}

func TestHotMode(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/hot", "minilambda-runner-hot")
	invoke := func(t *testing.T, f *fixture, ref string, event string, timeout int) (projections.Invocation, hotAnswer, error) {
		t.Helper()
		inv, err := f.svc.Invoke(context.Background(), ref, function.Request{Event: json.RawMessage(event), Timeout: timeout})
		var a hotAnswer
		if err == nil && inv.Status == "COMPLETED" {
			if jerr := json.Unmarshal([]byte(inv.Result), &a); jerr != nil {
				t.Fatalf("result %q: %v", inv.Result, jerr)
			}
		}
		return inv, a, err
	}
	hotEvents := func(f *fixture, typ string) []eventlog.Event {
		var out []eventlog.Event
		f.log.Read(context.Background(), 0, eventlog.Filter{Type: typ}, func(e eventlog.Event) error {
			out = append(out, e)
			return nil
		})
		return out
	}

	t.Run("warm reuse, logs and the log", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot"})
		var first projections.Invocation
		for i := 1; i <= 3; i++ {
			inv, a, err := invoke(t, f, "hot", `{"name": "w"}`, 0)
			if err != nil || inv.Status != "COMPLETED" || a.Count != i || inv.Logs != "handling \"w\"\n" {
				t.Fatalf("call %d: %v %+v %+v", i, err, inv, a)
			}
			if i == 1 {
				first = inv
			} else if inv.ContainerID != first.ContainerID {
				t.Fatalf("call %d ran in %s, not the warm %s", i, inv.ContainerID, first.ContainerID)
			}
			evs := f.events(inv.InvocationID)
			if got := types(evs); got != "queued started completed" {
				t.Fatalf("events of call %d: %s", i, got)
			}
		}
		if n := len(hotEvents(f, projections.TypeHotStarted)); n != 1 {
			t.Fatalf("%d hot containers started for 3 sequential calls", n)
		}
	})

	// A hot container gets one core by default, and Go in it one P; the
	// function's cpus, or the server's setting, say otherwise.
	t.Run("CPU quota", func(t *testing.T) {
		// Go's GOMAXPROCS is the quota rounded up, at least 2, at most the
		// machine's cores.
		procs := func(quota int) int { return min(runtime.NumCPU(), max(2, quota)) }
		for _, tc := range []struct {
			name   string
			pooled float64
			cpus   float64
			nano   int64
			procs  int
		}{
			{"default", 0, 0, 1e9, procs(1)},
			{"the function's", 0, 2, 2e9, procs(2)},
			{"none", -1, 0, 0, runtime.NumCPU()},
		} {
			f := newService(t, cli, img.Tag, runner.Options{PooledCPUs: tc.pooled})
			f.register(function.Spec{Name: "hot", Mode: "hot", CPUs: tc.cpus})
			inv, a, err := invoke(t, f, "hot", `{"name": "q"}`, 0)
			if err != nil || inv.Status != "COMPLETED" {
				t.Fatalf("%s: %v %+v", tc.name, err, inv)
			}
			info, err := cli.ContainerInspect(context.Background(), inv.ContainerID)
			if err != nil {
				t.Fatal(err)
			}
			if info.HostConfig.NanoCPUs != tc.nano || a.Procs != tc.procs {
				t.Errorf("%s: nano cpus %d, GOMAXPROCS %d; want %d, %d", tc.name, info.HostConfig.NanoCPUs, a.Procs, tc.nano, tc.procs)
			}
		}
	})

	t.Run("pool grows to concurrency, then 429", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot", Concurrency: 3})
		var wg sync.WaitGroup
		pids := make([]int, 3)
		started := make(chan struct{}, 3)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started <- struct{}{}
				_, a, err := invoke(t, f, "hot", `{"hang_ms": 1500}`, 0)
				if err != nil {
					t.Error(err)
				}
				pids[i] = a.Pid
			}()
		}
		for range 3 {
			<-started
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			running, _, _ := f.svc.Views().Invocations(projections.InvocationQuery{Status: "RUNNING"})
			if len(running) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d of 3 running", len(running))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, _, err := invoke(t, f, "hot", `{}`, 0); !errors.Is(err, function.ErrBusy) {
			t.Errorf("a 4th call past concurrency 3: %v", err)
		}
		wg.Wait()
		if n := len(hotEvents(f, projections.TypeHotStarted)); n != 3 {
			t.Errorf("%d hot containers for 3 concurrent calls", n)
		}
	})

	// A call that finds every container busy starts another in the
	// background but takes whichever is ready first: here the busy one,
	// which frees in 30 ms, long before a container could start. The one
	// started for it joins the pool.
	t.Run("a call takes the container that frees first", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot"})
		first, _, err := invoke(t, f, "hot", `{"name": "a"}`, 0)
		if err != nil || first.Status != "COMPLETED" {
			t.Fatalf("first call: %v %+v", err, first)
		}
		busy := make(chan projections.Invocation)
		go func() {
			inv, _, _ := invoke(t, f, "hot", `{"hang_ms": 30}`, 0)
			busy <- inv
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			running, _, _ := f.svc.Views().Invocations(projections.InvocationQuery{Status: "RUNNING"})
			if len(running) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the first container never got busy")
			}
			time.Sleep(200 * time.Microsecond)
		}
		inv, a, err := invoke(t, f, "hot", `{"name": "b"}`, 0)
		if err != nil || inv.Status != "COMPLETED" || inv.ContainerID != first.ContainerID || a.Count < 2 {
			t.Fatalf("the call that found the pool busy: %v %+v, ran %s (the warm one is %s), its count %d", err, inv, inv.ContainerID, first.ContainerID, a.Count)
		}
		if b := <-busy; b.ContainerID != first.ContainerID {
			t.Fatalf("the busy call ran in %s", b.ContainerID)
		}
		for deadline := time.Now().Add(30 * time.Second); len(hotEvents(f, projections.TypeHotStarted)) < 2; {
			if time.Now().After(deadline) {
				t.Fatal("the container started for the waiting call never joined the pool")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	// With no concurrency of its own, a function's pool grows to the
	// default size and the calls past it wait for a container; one that
	// waits its whole timeout is refused, and nothing of it is recorded.
	t.Run("calls past the default pool wait", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		fn := f.register(function.Spec{Name: "hot", Mode: "hot"})
		const calls = 16
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inv, _, err := invoke(t, f, "hot", `{"hang_ms": 300}`, 0)
				if err == nil && inv.Status != "COMPLETED" {
					err = fmt.Errorf("%s: %s", inv.Status, inv.Error)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("one of %d calls at once: %v", calls, err)
			}
		}
		if n := len(hotEvents(f, projections.TypeHotStarted)); n != function.DefaultPoolSize {
			t.Errorf("%d containers for %d calls at once, want the pool's %d", n, calls, function.DefaultPoolSize)
		}

		// Four calls hold the pool longer than a fifth may wait.
		hold := make(chan struct{}, function.DefaultPoolSize)
		for range function.DefaultPoolSize {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hold <- struct{}{}
				invoke(t, f, "hot", `{"hang_ms": 3000}`, 0)
			}()
		}
		for range function.DefaultPoolSize {
			<-hold
		}
		f.waitRunningN(fn.ID, function.DefaultPoolSize)
		page, _, _ := f.svc.Views().Invocations(projections.InvocationQuery{FunctionID: fn.ID})
		if _, _, err := invoke(t, f, "hot", `{}`, 1); !errors.Is(err, function.ErrBusy) {
			t.Errorf("a call that waited its whole timeout: %v", err)
		}
		if after, _, _ := f.svc.Views().Invocations(projections.InvocationQuery{FunctionID: fn.ID}); len(after) != len(page) {
			t.Errorf("a refused call was recorded: %d invocations, then %d", len(page), len(after))
		}
		wg.Wait()
	})

	t.Run("shrinks after the idle TTL", func(t *testing.T) {
		m := metrics.New()
		containers := func() float64 {
			var g dto.Metric
			m.HotContainers.WithLabelValues("hot").Write(&g)
			return g.GetGauge().GetValue()
		}
		f := newService(t, cli, img.Tag, runner.Options{HotIdleTTL: 500 * time.Millisecond, Metrics: m})
		f.register(function.Spec{Name: "hot", Mode: "hot"})
		if _, _, err := invoke(t, f, "hot", `{}`, 0); err != nil {
			t.Fatal(err)
		}
		if n := containers(); n != 1 {
			t.Errorf("the metric shows %v hot containers after one call, want 1", n)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(hotEvents(f, projections.TypeHotStopped)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("idle hot container never stopped")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ev := hotEvents(f, projections.TypeHotStopped)[0]; !strings.Contains(string(ev.Data), `"reason":"idle"`) {
			t.Errorf("stopped for %s", ev.Data)
		}
		if n := containers(); n != 0 {
			t.Errorf("the metric shows %v hot containers once the idle one stopped, want 0", n)
		}
		// And it comes back on demand.
		if inv, a, err := invoke(t, f, "hot", `{}`, 0); err != nil || a.Count != 1 {
			t.Fatalf("after shrinking: %v %+v", err, inv)
		}
	})

	t.Run("crashed and hung containers are replaced", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot"})
		before, _, _ := invoke(t, f, "hot", `{}`, 0)
		crashed, _, err := invoke(t, f, "hot", `{"crash": true}`, 0)
		if err != nil || crashed.Status != "FAILED" || crashed.ErrorType != "function_error" || crashed.ContainerID != before.ContainerID {
			t.Fatalf("crash: %v %+v", err, crashed)
		}
		after, a, err := invoke(t, f, "hot", `{}`, 0)
		if err != nil || after.Status != "COMPLETED" || after.ContainerID == before.ContainerID || a.Count != 1 {
			t.Fatalf("after the crash: %v %+v", err, after)
		}
		start := time.Now()
		hung, _, err := invoke(t, f, "hot", `{"hang_ms": 60000}`, 1)
		if err != nil || hung.Status != "FAILED" || hung.ErrorType != "timeout" || time.Since(start) > 5*time.Second {
			t.Fatalf("hang: %v %+v after %v", err, hung, time.Since(start))
		}
		if next, _, err := invoke(t, f, "hot", `{}`, 0); err != nil || next.Status != "COMPLETED" || next.ContainerID == hung.ContainerID {
			t.Fatalf("after the hang: %v %+v", err, next)
		}
	})

	// The engine carries stdout and stderr on separate paths, so under load
	// an event's logs can come after its result line; each invocation must
	// still get its own logs, whole.
	t.Run("logs stay with their invocation under load", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot", Concurrency: 8})
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					name := fmt.Sprintf("c%d-%d", c, i)
					inv, a, err := invoke(t, f, "hot", `{"name": "`+name+`"}`, 0)
					if err != nil || a.Message != "Hello, "+name+"!" || inv.Logs != fmt.Sprintf("handling %q\n", name) {
						t.Errorf("%s: %v logs %q answer %+v", name, err, inv.Logs, a)
						return
					}
				}
			}()
		}
		wg.Wait()
	})

	t.Run("an update drains the old pool", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "hot", Mode: "hot"})
		old, _, _ := invoke(t, f, "hot", `{}`, 0)
		env := map[string]string{"V": "2"}
		if _, err := f.ctl.Update(context.Background(), "hot", function.Patch{Env: &env}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(hotEvents(f, projections.TypeHotStopped)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the old pool was not drained")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ev := hotEvents(f, projections.TypeHotStopped)[0]; !strings.Contains(string(ev.Data), old.ContainerID) || !strings.Contains(string(ev.Data), "updated") {
			t.Errorf("stop event %s", ev.Data)
		}
		if next, _, err := invoke(t, f, "hot", `{}`, 0); err != nil || next.ContainerID == old.ContainerID || next.FunctionVersion != 2 {
			t.Fatalf("after the update: %v %+v", err, next)
		}
	})
}

func TestPrestartedSpare(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-spare")
	m := metrics.New()
	f := newService(t, cli, img.Tag, runner.Options{Metrics: m})
	f.register(function.Spec{Name: "fn"})
	call := func(name string) projections.Invocation {
		inv, err := f.svc.Invoke(context.Background(), "fn", function.Request{Event: json.RawMessage(`{"name": "` + name + `"}`)})
		if err != nil || inv.Status != "COMPLETED" || inv.Result != "{\"message\":\"Hello, "+name+"!\"}\n" {
			t.Fatalf("%s: %v %+v", name, err, inv)
		}
		return inv
	}
	first := call("first")
	// The spare is prepared in the background after the first call.
	deadline := time.Now().Add(30 * time.Second)
	for {
		second := call("second")
		var c dto.Metric
		m.Starts.WithLabelValues("prestarted").Write(&c)
		if c.GetCounter().GetValue() == 1 {
			if second.ContainerID == first.ContainerID {
				t.Fatalf("the spare was the first call's container")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no invocation ran in a prestarted container")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A spare never serves a second invocation, and an update drops it.
	env := map[string]string{"V": "2"}
	if _, err := f.ctl.Update(context.Background(), "fn", function.Patch{Env: &env}); err != nil {
		t.Fatal(err)
	}
	call("after-update")
}

// TestSparesKeepAheadOfBackToBackCalls calls a cold function ten times,
// one after another: only the first creates its own container; every
// later call runs in a prestarted one, waiting for the spare already
// starting rather than asking the engine for another. Unused, the spares
// are dropped after the idle TTL.
func TestSparesKeepAheadOfBackToBackCalls(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-spares")
	m := metrics.New()
	f := newService(t, cli, img.Tag, runner.Options{Metrics: m, HotIdleTTL: 2 * time.Second})
	fn := f.register(function.Spec{Name: "fn"})
	seen := map[string]bool{}
	for i := range 10 {
		inv, err := f.svc.Invoke(context.Background(), "fn", function.Request{Event: json.RawMessage(`{"name": "b"}`)})
		if err != nil || inv.Status != "COMPLETED" {
			t.Fatalf("call %d: %v %+v", i, err, inv)
		}
		if seen[inv.ContainerID] {
			t.Fatalf("call %d ran in container %s again", i, inv.ContainerID)
		}
		seen[inv.ContainerID] = true
	}
	count := func(kind string) float64 {
		var c dto.Metric
		m.Starts.WithLabelValues(kind).Write(&c)
		return c.GetCounter().GetValue()
	}
	if cold, pre := count("cold"), count("prestarted"); cold != 1 || pre != 9 {
		t.Errorf("%v cold and %v prestarted starts over 10 back-to-back calls; want 1 and 9", cold, pre)
	}
	deadline := time.Now().Add(15 * time.Second)
	for f.containers(fn.ID) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d containers of an idle function after its TTL", f.containers(fn.ID))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The overhead metric is the platform's share of each synchronous
// invocation: above zero, below the call's own wall time.
func TestOverheadMetric(t *testing.T) {
	cli := dockertest.Client(t)
	hot := dockertest.BuildGoImage(t, cli, "../testdata/hot", "minilambda-runner-overhead-hot")
	cold := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-overhead-cold")
	m := metrics.New()
	f := newService(t, cli, "", runner.Options{Metrics: m})
	f.register(function.Spec{Name: "hot", Image: hot.Tag, Mode: "hot"})
	f.register(function.Spec{Name: "cold", Image: cold.Tag})
	for _, c := range []struct {
		fn, mode string
		calls    int
	}{{"hot", "hot", 3}, {"cold", "cold", 1}} {
		var wall time.Duration
		for range c.calls {
			begin := time.Now()
			inv, err := f.svc.Invoke(context.Background(), c.fn, function.Request{Event: json.RawMessage(`{"name": "o"}`)})
			wall += time.Since(begin)
			if err != nil || inv.Status != "COMPLETED" {
				t.Fatalf("%s: %v %+v", c.fn, err, inv)
			}
		}
		var got dto.Metric
		if err := m.Overhead.WithLabelValues(c.mode).(prometheus.Histogram).Write(&got); err != nil {
			t.Fatal(err)
		}
		h := got.GetHistogram()
		if h.GetSampleCount() != uint64(c.calls) || h.GetSampleSum() <= 0 || h.GetSampleSum() >= wall.Seconds() {
			t.Errorf("%s: %d samples summing to %.6f s over %v of calls", c.mode, h.GetSampleCount(), h.GetSampleSum(), wall)
		}
	}
}

// TestNoSpareForAGoneVersion deletes (and, in a second round, updates) a
// cold function while its invocation runs: no spare of the version that
// ran is prestarted after it, since none could ever serve.
func TestNoSpareForAGoneVersion(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-gone")
	f := newService(t, cli, img.Tag, runner.Options{})
	for _, change := range []string{"delete", "update"} {
		t.Run(change, func(t *testing.T) {
			fn := f.register(function.Spec{Name: "fn-" + change})
			done := make(chan projections.Invocation, 1)
			go func() {
				inv, err := f.svc.Invoke(context.Background(), fn.ID, function.Request{Event: json.RawMessage(`{"sleep_ms": 1500}`)})
				if err != nil {
					t.Error(err)
				}
				done <- inv
			}()
			f.waitRunning(fn.ID)
			var err error
			if change == "delete" {
				err = f.ctl.Delete(context.Background(), fn.ID)
			} else {
				env := map[string]string{"V": "2"}
				_, err = f.ctl.Update(context.Background(), fn.ID, function.Patch{Env: &env})
			}
			if err != nil {
				t.Fatal(err)
			}
			if inv := <-done; inv.Status != "COMPLETED" {
				t.Fatalf("the invocation under way: %+v", inv)
			}
			// A spare takes well under a second to prestart here; give one
			// three seconds to appear.
			for range 30 {
				if n := f.containers(fn.ID); n != 0 {
					t.Fatalf("%d containers of function %s after its invocation ended", n, fn.ID)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
