package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

// The tests of this file and hot_test.go run functions through a host on
// the real engine, as the server does: the Docker driver starts the
// containers detached, and the init in each carries the function's input
// and output through its socket.

// recorder is the Docker driver, recording the specs it is asked to start.
type recorder struct {
	*docker.Docker
	mu    sync.Mutex
	specs []engine.Spec
	ids   []string // the containers started
}

var _ agent.Starter = (*recorder)(nil)

func (r *recorder) StartDetached(ctx context.Context, s engine.Spec) (engine.Detached, error) {
	r.mu.Lock()
	r.specs = append(r.specs, s)
	r.mu.Unlock()
	c, err := r.Docker.StartDetached(ctx, s)
	if err == nil {
		r.mu.Lock()
		r.ids = append(r.ids, c.ID())
		r.mu.Unlock()
	}
	return c, err
}

// assertAllRemoved checks that every container started so far is removed,
// or soon is.
func (r *recorder) assertAllRemoved(t *testing.T, cli *client.Client) {
	t.Helper()
	r.mu.Lock()
	ids := slices.Clone(r.ids)
	r.mu.Unlock()
	for _, id := range ids {
		assertRemoved(t, cli, id)
	}
}

// removeWait bounds the wait for a container's removal, which the host
// does in the background once a cold run has its answer (the driver's
// removal gives up after 30 s).
const removeWait = 35 * time.Second

// socketDirs are the socket directories of every container started.
func (r *recorder) socketDirs(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var dirs []string
	for _, s := range r.specs {
		for _, m := range s.Mounts {
			if m.Target == "/run/minilambda/api" {
				dirs = append(dirs, m.Source)
			}
		}
	}
	return dirs
}

// assertReleased checks that no container started so far has its socket
// directory still, once it is removed.
func (r *recorder) assertReleased(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(removeWait)
	for _, dir := range r.socketDirs(t) {
		for {
			_, err := os.Stat(dir)
			if os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("socket directory %s: %v; want it removed with its container", dir, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// dockerHost connects to the engine and returns a host on it, with the
// init built in lambdatest's directory, the recorder of its driver, and a
// Spec skeleton carrying a label unique to the test; at cleanup it closes
// the host and checks that no container with that label is left.
func dockerHost(t *testing.T) (*agent.Host, *recorder, *client.Client, engine.Spec) {
	t.Helper()
	cli := dockertest.Client(t)
	d, err := docker.New(cli, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(t)
	t.Cleanup(func() { dockertest.AssertNoContainers(t, cli, key, value) })
	rec := &recorder{Docker: d}
	h, err := agent.New(agent.Options{Engine: rec, InitDir: lambdatest.InitDir(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h, rec, cli, engine.Spec{
		FunctionID:   "fn-" + t.Name(),
		FunctionName: "test",
		InvocationID: "inv-" + value,
		Labels:       map[string]string{key: value},
	}
}

// buildFn builds the test program testdata/<name>.
func buildFn(t *testing.T, cli *client.Client, name string) dockertest.Image {
	t.Helper()
	return dockertest.BuildGoImage(t, cli, "testdata/"+name, name)
}

// assertRemoved checks that the engine no longer knows the container, or
// soon does not: a cold run's container is removed once it has answered.
func assertRemoved(t *testing.T, cli *client.Client, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("no container ID in the result")
	}
	deadline := time.Now().Add(removeWait)
	for {
		_, err := cli.ContainerInspect(context.Background(), id)
		if cerrdefs.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("container %.12s still exists %v after its run (inspect error: %v)", id, removeWait, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logTimings(t *testing.T, res engine.Result) {
	t.Helper()
	tm := res.Timings
	t.Logf("timings: create=%v start=%v wait=%v inspect=%v total=%v",
		tm.Create, tm.Start, tm.Wait, tm.Inspect, tm.Total)
}

// noStart is an engine.OnStart that records nothing.
func noStart(string, string) error { return nil }

// echoed is what the echo function answers.
type echoed struct {
	Event       any    `json:"event"`
	Greeting    string `json:"greeting"`
	Bytes       int    `json:"bytes"`
	AgentSecret string `json:"agent_secret"`
}

func TestRunEcho(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	img := buildFn(t, cli, "echo")

	spec.Image = img.Tag
	spec.Env = map[string]string{"GREETING": "hello"}
	input := []byte(`{"name": "world"}`)
	var started struct {
		id, digest string
		info       container.InspectResponse
	}
	onStart := func(id, digest string) error {
		started.id, started.digest = id, digest
		info, err := cli.ContainerInspect(context.Background(), id)
		started.info = info
		return err
	}
	res, err := h.Run(context.Background(), spec, input, 0, onStart)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)

	// What the function wrote, byte for byte: the init passes stdout on as
	// it is, and stderr apart.
	want, _ := json.Marshal(map[string]any{
		"event": map[string]string{"name": "world"}, "greeting": "hello", "bytes": len(input), "agent_secret": "",
	})
	if got := string(res.Stdout); got != string(want)+"\n" {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := string(res.Stderr), fmt.Sprintf("echo: got %d bytes\n", len(input)); got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	if res.ExitCode != 0 || res.ErrorType() != "" || res.TimedOut || res.OOMKilled || res.OutputLimited ||
		res.StdoutTruncated || res.StderrTruncated {
		t.Errorf("result = %+v, want a plain success", res)
	}
	if res.ImageDigest != img.ID {
		t.Errorf("ImageDigest = %q, want the image ID %q", res.ImageDigest, img.ID)
	}
	if started.id != res.ContainerID || started.digest != img.ID {
		t.Errorf("OnStart(%q, %q), want (%q, %q)", started.id, started.digest, res.ContainerID, img.ID)
	}
	if res.StartedAt.IsZero() || !res.CompletedAt.After(res.StartedAt) || res.Duration <= 0 {
		t.Errorf("StartedAt=%v CompletedAt=%v Duration=%v", res.StartedAt, res.CompletedAt, res.Duration)
	}
	tm := res.Timings
	// The removal is the host's, after the answer: no part of the run.
	for name, v := range map[string]time.Duration{"create": tm.Create, "start": tm.Start,
		"wait": tm.Wait, "total": tm.Total} {
		if v <= 0 {
			t.Errorf("timing %s = %v, want > 0", name, v)
		}
	}
	assertRemoved(t, cli, res.ContainerID)
	rec.assertReleased(t)

	// The container was safe by default, and ran the image's own
	// entrypoint under the init, with nothing attached.
	info := started.info
	if info.Config == nil || info.HostConfig == nil {
		t.Fatal("no container inspected in OnStart")
	}
	hc := info.HostConfig
	secret := ""
	for _, kv := range info.Config.Env {
		if v, ok := strings.CutPrefix(kv, secretEnv+"="); ok {
			secret = v
		}
	}
	wantArgs := []string{"-mode", "cold", "-socket", "/run/minilambda/api/rapi.sock", "-limit", "1048576", "--", "/fn"}
	readOnlyBinds := len(info.Mounts) == 2
	for _, m := range info.Mounts {
		if m.RW || (m.Destination != "/run/minilambda/api" && m.Destination != "/run/minilambda/init") {
			readOnlyBinds = false
		}
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"label managed", info.Config.Labels[docker.LabelManaged] == "true"},
		{"label function", info.Config.Labels[docker.LabelFunction] == spec.FunctionID},
		{"label invocation", info.Config.Labels[docker.LabelInvocation] == spec.InvocationID},
		{"test label", info.Config.Labels[dockertest.TestRunLabel] == spec.Labels[dockertest.TestRunLabel]},
		{"image by ID", info.Image == img.ID},
		{"the init, then the image entrypoint", info.Path == "/run/minilambda/init" && slices.Equal(info.Args, wantArgs)},
		{"no tty", !info.Config.Tty},
		{"no stdin", !info.Config.OpenStdin && !info.Config.AttachStdin},
		{"nothing attached", !info.Config.AttachStdout && !info.Config.AttachStderr},
		{"env", slices.Contains(info.Config.Env, "GREETING=hello")},
		{"the init's secret", len(secret) == 2*secretLen},
		{"cap drop all", len(hc.CapDrop) == 1 && strings.EqualFold(hc.CapDrop[0], "ALL")},
		{"no-new-privileges", len(hc.SecurityOpt) == 1 && hc.SecurityOpt[0] == "no-new-privileges"},
		{"not privileged", !hc.Privileged},
		{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == docker.PidsLimit},
		{"memory", hc.Memory == function.DefaultMemoryMB<<20},
		{"no swap", hc.MemorySwap == hc.Memory},
		{"no cpu quota", hc.NanoCPUs == 0},
		{"bridge", hc.NetworkMode == "bridge"},
		{"the socket and the init, read-only", readOnlyBinds},
		{"no logs on disk", hc.LogConfig.Type == "none"},
		{"not auto-removed", !hc.AutoRemove},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("container config: %s: not as expected (path %q, args %q, mounts %+v, config %+v, host config %+v)",
				c.what, info.Path, info.Args, info.Mounts, info.Config, hc)
		}
	}
}

func TestRunNetworkNoneAndCPUs(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "echo").Tag
	spec.Network = "none"
	spec.CPUs = 0.5
	spec.MemoryMB = 64
	var hc *container.HostConfig
	onStart := func(id, _ string) error {
		info, err := cli.ContainerInspect(context.Background(), id)
		hc = info.HostConfig
		return err
	}
	res, err := h.Run(context.Background(), spec, []byte(`"x"`), 0, onStart)
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorType() != "" {
		t.Fatalf("result %+v, stderr %q", res, res.Stderr)
	}
	if hc.NetworkMode != "none" || hc.NanoCPUs != 500_000_000 || hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 {
		t.Errorf("host config: network %q, nano cpus %d, memory %d, swap %d", hc.NetworkMode, hc.NanoCPUs, hc.Memory, hc.MemorySwap)
	}
	var out echoed
	if err := json.Unmarshal(res.Stdout, &out); err != nil || out.Event != "x" {
		t.Errorf("stdout %q (%v); want the event echoed", res.Stdout, err)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunLargeInput(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "echo").Tag
	big := strings.Repeat("a", 3<<20) // far past any pipe buffer
	spec.OutputLimit = 8 << 20
	res, err := h.Run(context.Background(), spec, []byte(`"`+big+`"`), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)
	var out echoed
	if err := json.Unmarshal(res.Stdout, &out); err != nil || out.Event != big || out.Bytes != len(big)+2 {
		t.Errorf("echoed event: %d bytes of stdout (error %v), want the %d bytes of the event", len(res.Stdout), err, len(big))
	}
	if res.ErrorType() != "" || res.StdoutTruncated || res.StderrTruncated {
		t.Errorf("result %+v; want a plain success", res)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunFunctionError(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "fail").Tag
	res, err := h.Run(context.Background(), spec, []byte(`{}`), 0, nil)
	if err != nil {
		t.Fatalf("a failing function is a result, not an error: %v", err)
	}
	if res.ExitCode != 3 || res.ErrorType() != "function_error" || res.OOMKilled || res.TimedOut {
		t.Errorf("exit code %d, error type %q; want 3, function_error", res.ExitCode, res.ErrorType())
	}
	if got := string(res.Stdout); got != "{\"partial\": true}\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := string(res.Stderr); got != "something went wrong\n" {
		t.Errorf("stderr = %q", got)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunTimeout(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "sleep").Tag
	timeout := time.Second
	// The function never reads stdin: a big event must not hold Run up.
	input := bytes.Repeat([]byte(" "), 2<<20)
	begin := time.Now()
	res, err := h.Run(context.Background(), spec, input, timeout, nil)
	elapsed := time.Since(begin)
	if err != nil {
		t.Fatalf("a timeout is a result, not an error: %v", err)
	}
	logTimings(t, res)
	if !res.TimedOut || res.ErrorType() != "timeout" {
		t.Errorf("TimedOut=%v ErrorType=%q", res.TimedOut, res.ErrorType())
	}
	if res.Duration < timeout || res.Duration > timeout+3*time.Second {
		t.Errorf("run lasted %v, want about %v", res.Duration, timeout)
	}
	// Generous: create and start are slow on a busy engine.
	if elapsed > timeout+10*time.Second {
		t.Errorf("Run took %v for a %v timeout", elapsed, timeout)
	}
	if res.ExitCode != 137 {
		t.Errorf("exit code %d, want 137 (SIGKILL)", res.ExitCode)
	}
	if got := string(res.Stderr); got != "sleeping\n" {
		t.Errorf("stderr = %q, want the logs up to the kill", got)
	}
	assertRemoved(t, cli, res.ContainerID)
	rec.assertReleased(t)
}

func TestRunCancel(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "sleep").Tag
	const timeout = time.Minute

	t.Run("while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		onStart := func(string, string) error {
			time.AfterFunc(300*time.Millisecond, cancel) // the client hangs up
			return nil
		}
		begin := time.Now()
		res, err := h.Run(ctx, spec, nil, timeout, onStart)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if elapsed := time.Since(begin); elapsed > 10*time.Second {
			t.Errorf("Run took %v to give up", elapsed)
		}
		logTimings(t, res)
		assertRemoved(t, cli, res.ContainerID)
		rec.assertReleased(t)
	})
	t.Run("before run", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := h.Run(ctx, spec, nil, timeout, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		rec.assertReleased(t)
	})
}

func TestRunOnStartError(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "sleep").Tag
	errBoom := errors.New("event log unavailable")
	var id string
	onStart := func(containerID, _ string) error {
		id = containerID
		return errBoom
	}
	begin := time.Now()
	_, err := h.Run(context.Background(), spec, nil, 0, onStart)
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the OnStart error", err)
	}
	if elapsed := time.Since(begin); elapsed > 10*time.Second {
		t.Errorf("Run took %v", elapsed)
	}
	assertRemoved(t, cli, id)
	rec.assertReleased(t)
}

func TestRunOutputLimit(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "flood").Tag
	spec.OutputLimit = 64 << 10
	begin := time.Now()
	res, err := h.Run(context.Background(), spec, nil, 20*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)
	if !res.OutputLimited || !res.StdoutTruncated || res.ErrorType() != "output_limit" {
		t.Errorf("OutputLimited=%v StdoutTruncated=%v ErrorType=%q", res.OutputLimited, res.StdoutTruncated, res.ErrorType())
	}
	if len(res.Stdout) != int(spec.OutputLimit) {
		t.Errorf("kept %d bytes of stdout, want %d", len(res.Stdout), spec.OutputLimit)
	}
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	if want := bytes.Repeat(line, int(spec.OutputLimit)/len(line)); !bytes.Equal(res.Stdout, want) {
		t.Errorf("stdout is not the first %d bytes the function wrote", len(want))
	}
	if res.TimedOut || time.Since(begin) > 10*time.Second {
		t.Errorf("the flood was not stopped at the limit: took %v, TimedOut=%v", time.Since(begin), res.TimedOut)
	}
	if res.ExitCode != 137 {
		t.Errorf("exit code %d, want 137 (killed)", res.ExitCode)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunOOM(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "oom").Tag
	spec.MemoryMB = 16
	res, err := h.Run(context.Background(), spec, nil, 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)
	if !res.OOMKilled || res.ErrorType() != "out_of_memory" || res.ExitCode != 137 {
		t.Errorf("OOMKilled=%v ErrorType=%q ExitCode=%d TimedOut=%v; stderr %q",
			res.OOMKilled, res.ErrorType(), res.ExitCode, res.TimedOut, res.Stderr)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunImageNotFound(t *testing.T) {
	h, rec, _, spec := dockerHost(t)
	spec.Image = dockertest.UniqueTag("does-not-exist")
	_, err := h.Run(context.Background(), spec, nil, 0, nil)
	if !errors.Is(err, engine.ErrImageNotFound) {
		t.Fatalf("err = %v, want ErrImageNotFound", err)
	}
	if _, err := h.Prestart(context.Background(), spec); !errors.Is(err, engine.ErrImageNotFound) {
		t.Errorf("Prestart: err = %v, want ErrImageNotFound", err)
	}
	if _, err := h.StartHot(context.Background(), spec); !errors.Is(err, engine.ErrImageNotFound) {
		t.Errorf("StartHot: err = %v, want ErrImageNotFound", err)
	}
	rec.assertReleased(t)
}

func TestRunInvalidSpec(t *testing.T) {
	// Checked before the engine is asked anything: no engine needed.
	cli, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	d, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	for name, tc := range map[string]struct {
		spec    engine.Spec
		timeout time.Duration
	}{
		"no image":          {spec: engine.Spec{}},
		"bad image":         {spec: engine.Spec{Image: "UPPER/Case"}},
		"host network":      {spec: engine.Spec{Image: "x", Network: "host"}},
		"container network": {spec: engine.Spec{Image: "x", Network: "container:abc"}},
		"tiny memory":       {spec: engine.Spec{Image: "x", MemoryMB: 1}},
		"negative timeout":  {spec: engine.Spec{Image: "x"}, timeout: -time.Second},
		"negative cpus":     {spec: engine.Spec{Image: "x", CPUs: -1}},
		"negative limit":    {spec: engine.Spec{Image: "x", OutputLimit: -1}},
		"bad env name":      {spec: engine.Spec{Image: "x", Env: map[string]string{"A=B": "c"}}},
	} {
		if _, err := h.Run(context.Background(), tc.spec, nil, tc.timeout, nil); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", name, err)
		}
		if tc.timeout != 0 {
			continue
		}
		if _, err := h.StartHot(context.Background(), tc.spec); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: StartHot: err = %v, want ErrInvalidSpec", name, err)
		}
		if _, err := h.Prestart(context.Background(), tc.spec); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: Prestart: err = %v, want ErrInvalidSpec", name, err)
		}
	}
}

func TestRunConcurrent(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "echo").Tag
	const n = 20
	var (
		wg      sync.WaitGroup
		results = make([]engine.Result, n)
		errs    = make([]error, n)
	)
	begin := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := spec
			s.InvocationID = fmt.Sprintf("%s-%d", spec.InvocationID, i)
			results[i], errs[i] = h.Run(context.Background(), s, []byte(fmt.Sprintf(`{"i": %d}`, i)), 0, nil)
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	var sum engine.Timings
	for i := range n {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
			continue
		}
		var out struct {
			Event struct{ I int } `json:"event"`
		}
		if err := json.Unmarshal(results[i].Stdout, &out); err != nil || out.Event.I != i || results[i].ExitCode != 0 {
			t.Errorf("run %d: exit %d, stdout %q", i, results[i].ExitCode, results[i].Stdout)
		}
		if want := fmt.Sprintf("echo: got %d bytes\n", len(fmt.Sprintf(`{"i": %d}`, i))); string(results[i].Stderr) != want {
			t.Errorf("run %d: stderr %q, want %q", i, results[i].Stderr, want)
		}
		assertRemoved(t, cli, results[i].ContainerID)
		tm := results[i].Timings
		sum.Create += tm.Create
		sum.Start += tm.Start
		sum.Wait += tm.Wait
		sum.Total += tm.Total
	}
	if dirs := rec.socketDirs(t); len(dirs) != n {
		t.Errorf("%d containers started for %d runs", len(dirs), n)
	}
	rec.assertReleased(t)
	t.Logf("%d concurrent runs in %v; mean create=%v start=%v wait=%v total=%v", n, elapsed,
		sum.Create/n, sum.Start/n, sum.Wait/n, sum.Total/n)
}

func TestPrestart(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	img := buildFn(t, cli, "echo")
	spec.Image = img.Tag
	ctx := context.Background()
	p, err := h.Prestart(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var started string
	input := []byte(`{"name": "early"}`)
	res, err := p.Run(ctx, input, 0, func(id, digest string) error {
		started = id
		return nil
	})
	if err != nil || res.ExitCode != 0 || res.ImageDigest != img.ID || started != res.ContainerID {
		t.Fatalf("prestarted run: %v %+v (started %q)", err, res, started)
	}
	var out echoed
	if err := json.Unmarshal(res.Stdout, &out); err != nil || fmt.Sprint(out.Event) != "map[name:early]" {
		t.Errorf("stdout %q (%v); want the event echoed", res.Stdout, err)
	}
	if got, want := string(res.Stderr), fmt.Sprintf("echo: got %d bytes\n", len(input)); got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	assertRemoved(t, cli, res.ContainerID)
	if _, err := p.Run(ctx, nil, 0, nil); err == nil {
		t.Error("a prepared container ran a second invocation")
	}
	// One that is never used is removed by Discard.
	q, err := h.Prestart(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	q.Discard(ctx)
	rec.assertAllRemoved(t, cli)
	rec.assertReleased(t)
}

// BenchmarkColdVsDockerRun times, alternating in one run, `docker run
// --rm -i` of an image and a cold Run of the same image and input, and
// reports both medians, their ratio and where Run's time goes.
func BenchmarkColdVsDockerRun(b *testing.B) {
	cli := dockertest.Client(b)
	img := dockertest.BuildGoImage(b, cli, "testdata/echo", "minilambda-bench-echo")
	d, err := docker.New(cli, nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	if _, err := h.Init(context.Background()); err != nil {
		b.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(b)
	b.Cleanup(func() { dockertest.AssertNoContainers(b, cli, key, value) })
	input := []byte(`{"name": "bench"}`)
	var dockerRun, cold []time.Duration
	var phases engine.Timings
	b.ResetTimer()
	for i := range b.N {
		dockerRun = append(dockerRun, dockertest.DockerRun(b, img.Tag, input, key, value))

		start := time.Now()
		res, err := h.Run(context.Background(), engine.Spec{
			FunctionID: "bench", InvocationID: "bench-" + value + "-" + time.Now().Format("150405.000000"), Image: img.Tag,
			Labels: map[string]string{key: value},
		}, input, 0, nil)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run %d: %v %+v", i, err, res)
		}
		cold = append(cold, time.Since(start))
		t := res.Timings
		phases.Create += t.Create
		phases.Start += t.Start
		phases.Wait += t.Wait
		phases.Inspect += t.Inspect
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(median(dockerRun), "docker-run-p50-ms")
	b.ReportMetric(median(cold), "cold-p50-ms")
	b.ReportMetric(median(cold)/median(dockerRun), "cold/docker-run")
	b.ReportMetric(ms(phases.Create), "create-ms")
	b.ReportMetric(ms(phases.Start), "start-ms")
	b.ReportMetric(ms(phases.Wait), "wait-ms")
	b.ReportMetric(ms(phases.Inspect), "inspect-ms")
}

// TestRunEngineLostMidRun cuts the engine off while a function runs, as
// the driver's cold run was tested: the run does not pass for a success
// (the engine cannot say how the container ended, and the function never
// answered), and RemoveManaged collects the container once the engine is
// back, as the server does at start-up.
func TestRunEngineLostMidRun(t *testing.T) {
	_, _, realCli, spec := dockerHost(t)
	spec.Image = buildFn(t, realCli, "sleep").Tag
	proxy := dockertest.NewProxy(t, realCli)
	cli, err := client.NewClientWithOpts(client.WithHost(proxy.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	d, err := docker.New(cli, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	onStart := func(string, string) error {
		time.AfterFunc(300*time.Millisecond, proxy.Stop)
		return nil
	}
	begin := time.Now()
	res, err := h.Run(context.Background(), spec, nil, 20*time.Second, onStart)
	if err == nil && res.ErrorType() == "" {
		t.Errorf("Run with the engine lost: a success (exit %d, stdout %q, stderr %q); want ErrEngineUnavailable or a failed result",
			res.ExitCode, res.Stdout, res.Stderr)
	}
	if err != nil && !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("err = %v, want ErrEngineUnavailable", err)
	}
	if elapsed := time.Since(begin); elapsed > 25*time.Second {
		t.Errorf("Run took %v to notice", elapsed)
	}

	proxy.Start()
	// The host's own removal may reach the engine once it is back, or may
	// have given up: RemoveManaged collects what it left.
	h.Close(context.Background())
	n, err := d.RemoveManaged(context.Background(), spec.Labels)
	if err != nil || n > 1 {
		t.Errorf("RemoveManaged = %d, %v; want at most the 1 container left behind", n, err)
	}
	if res.ContainerID != "" {
		assertRemoved(t, realCli, res.ContainerID)
	}
}
