package docker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

// setup connects to the engine and returns a runner on it, plus a Spec
// skeleton carrying a label unique to the test; at cleanup it checks that no
// container with that label is left.
func setup(t *testing.T) (*docker.Docker, *client.Client, engine.Spec) {
	t.Helper()
	cli := dockertest.Client(t)
	d, err := docker.New(cli, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(t)
	t.Cleanup(func() { dockertest.AssertNoContainers(t, cli, key, value) })
	return d, cli, engine.Spec{
		FunctionID:   "fn-" + t.Name(),
		FunctionName: "test",
		InvocationID: "inv-" + value,
		Labels:       map[string]string{key: value},
	}
}

// build builds the test program runner/testdata/<name>.
func build(t *testing.T, cli *client.Client, name string) dockertest.Image {
	t.Helper()
	return dockertest.BuildGoImage(t, cli, "testdata/"+name, name)
}

// assertRemoved checks that the engine no longer knows the container.
func assertRemoved(t *testing.T, cli *client.Client, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("no container ID in the result")
	}
	_, err := cli.ContainerInspect(context.Background(), id)
	if !cerrdefs.IsNotFound(err) {
		t.Errorf("container %.12s still exists (inspect error: %v)", id, err)
	}
}

func logTimings(t *testing.T, res engine.Result) {
	t.Helper()
	tm := res.Timings
	t.Logf("timings: image=%v create=%v attach=%v start=%v wait=%v inspect=%v remove=%v total=%v",
		tm.Image, tm.Create, tm.Attach, tm.Start, tm.Wait, tm.Inspect, tm.Remove, tm.Total)
}

func TestRunEcho(t *testing.T) {
	d, cli, spec := setup(t)
	img := build(t, cli, "echo")

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
	res, err := d.Run(context.Background(), spec, input, 0, onStart)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)

	var out struct {
		Event    map[string]string `json:"event"`
		Greeting string            `json:"greeting"`
		Bytes    int               `json:"bytes"`
	}
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%q", err, res.Stdout)
	}
	if out.Event["name"] != "world" || out.Greeting != "hello" || out.Bytes != len(input) {
		t.Errorf("stdout = %s", res.Stdout)
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
	for name, v := range map[string]time.Duration{"create": tm.Create, "attach": tm.Attach, "start": tm.Start,
		"wait": tm.Wait, "remove": tm.Remove, "total": tm.Total} {
		if v <= 0 {
			t.Errorf("timing %s = %v, want > 0", name, v)
		}
	}
	assertRemoved(t, cli, res.ContainerID)

	// The container was safe by default, and ran the image's own entrypoint.
	info := started.info
	if info.Config == nil || info.HostConfig == nil {
		t.Fatal("no container inspected in OnStart")
	}
	hc := info.HostConfig
	checks := []struct {
		what string
		ok   bool
	}{
		{"label managed", info.Config.Labels[docker.LabelManaged] == "true"},
		{"label function", info.Config.Labels[docker.LabelFunction] == spec.FunctionID},
		{"label invocation", info.Config.Labels[docker.LabelInvocation] == spec.InvocationID},
		{"test label", info.Config.Labels[dockertest.TestRunLabel] == spec.Labels[dockertest.TestRunLabel]},
		{"image by ID", info.Image == img.ID},
		{"image entrypoint", len(info.Config.Entrypoint) == 1 && info.Config.Entrypoint[0] == "/fn" && info.Path == "/fn"},
		{"no tty", !info.Config.Tty},
		{"stdin once", info.Config.OpenStdin && info.Config.StdinOnce},
		{"env", strings.Contains(strings.Join(info.Config.Env, "\n"), "GREETING=hello")},
		{"cap drop all", len(hc.CapDrop) == 1 && strings.EqualFold(hc.CapDrop[0], "ALL")},
		{"no-new-privileges", len(hc.SecurityOpt) == 1 && hc.SecurityOpt[0] == "no-new-privileges"},
		{"not privileged", !hc.Privileged},
		{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == docker.PidsLimit},
		{"memory", hc.Memory == function.DefaultMemoryMB<<20},
		{"no swap", hc.MemorySwap == hc.Memory},
		{"no cpu quota", hc.NanoCPUs == 0},
		{"bridge", hc.NetworkMode == "bridge"},
		{"no mounts", len(info.Mounts) == 0 && len(hc.Binds) == 0 && len(hc.Mounts) == 0},
		{"no logs on disk", hc.LogConfig.Type == "none"},
		{"not auto-removed", !hc.AutoRemove},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("container config: %s: not as expected (config %+v, host config %+v)", c.what, info.Config, hc)
		}
	}
}

func TestRunNetworkNoneAndCPUs(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "echo").Tag
	spec.Network = "none"
	spec.CPUs = 0.5
	spec.MemoryMB = 64
	var hc *container.HostConfig
	onStart := func(id, _ string) error {
		info, err := cli.ContainerInspect(context.Background(), id)
		hc = info.HostConfig
		return err
	}
	res, err := d.Run(context.Background(), spec, []byte(`"x"`), 0, onStart)
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorType() != "" {
		t.Fatalf("result %+v, stderr %q", res, res.Stderr)
	}
	if hc.NetworkMode != "none" || hc.NanoCPUs != 500_000_000 || hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 {
		t.Errorf("host config: network %q, nano cpus %d, memory %d, swap %d", hc.NetworkMode, hc.NanoCPUs, hc.Memory, hc.MemorySwap)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunLargeInput(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "echo").Tag
	big := strings.Repeat("a", 3<<20) // far past any pipe buffer
	spec.OutputLimit = 8 << 20
	res, err := d.Run(context.Background(), spec, []byte(`"`+big+`"`), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	logTimings(t, res)
	var out struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(res.Stdout, &out); err != nil || out.Event != big {
		t.Errorf("echoed event: %d bytes (error %v), want %d", len(out.Event), err, len(big))
	}
}

func TestRunFunctionError(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "fail").Tag
	res, err := d.Run(context.Background(), spec, []byte(`{}`), 0, nil)
	if err != nil {
		t.Fatalf("a failing function is a result, not an error: %v", err)
	}
	if res.ExitCode != 3 || res.ErrorType() != "function_error" {
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
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "sleep").Tag
	timeout := time.Second
	// The function never reads stdin: a big event must not hold Run up.
	input := bytes.Repeat([]byte(" "), 2<<20)
	begin := time.Now()
	res, err := d.Run(context.Background(), spec, input, timeout, nil)
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
}

func TestRunCancel(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "sleep").Tag
	const timeout = time.Minute

	t.Run("while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		onStart := func(string, string) error {
			time.AfterFunc(300*time.Millisecond, cancel) // the client hangs up
			return nil
		}
		begin := time.Now()
		res, err := d.Run(ctx, spec, nil, timeout, onStart)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if elapsed := time.Since(begin); elapsed > 10*time.Second {
			t.Errorf("Run took %v to give up", elapsed)
		}
		logTimings(t, res)
		assertRemoved(t, cli, res.ContainerID)
	})
	t.Run("before run", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := d.Run(ctx, spec, nil, timeout, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestRunOnStartError(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "sleep").Tag
	errBoom := errors.New("event log unavailable")
	var id string
	onStart := func(containerID, _ string) error {
		id = containerID
		return errBoom
	}
	begin := time.Now()
	_, err := d.Run(context.Background(), spec, nil, 0, onStart)
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the OnStart error", err)
	}
	if elapsed := time.Since(begin); elapsed > 10*time.Second {
		t.Errorf("Run took %v", elapsed)
	}
	assertRemoved(t, cli, id)
}

func TestRunOutputLimit(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "flood").Tag
	spec.OutputLimit = 64 << 10
	begin := time.Now()
	res, err := d.Run(context.Background(), spec, nil, 20*time.Second, nil)
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
	if res.TimedOut || time.Since(begin) > 10*time.Second {
		t.Errorf("the flood was not stopped at the limit: took %v, TimedOut=%v", time.Since(begin), res.TimedOut)
	}
	if res.ExitCode != 137 {
		t.Errorf("exit code %d, want 137 (killed)", res.ExitCode)
	}
	assertRemoved(t, cli, res.ContainerID)
}

func TestRunOOM(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "oom").Tag
	spec.MemoryMB = 16
	res, err := d.Run(context.Background(), spec, nil, 30*time.Second, nil)
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
	d, _, spec := setup(t)
	spec.Image = dockertest.UniqueTag("does-not-exist")
	_, err := d.Run(context.Background(), spec, nil, 0, nil)
	if !errors.Is(err, engine.ErrImageNotFound) {
		t.Fatalf("err = %v, want ErrImageNotFound", err)
	}
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
		if _, err := d.Run(context.Background(), tc.spec, nil, tc.timeout, nil); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", name, err)
		}
		if tc.timeout != 0 {
			continue
		}
		if _, err := d.StartHot(context.Background(), tc.spec); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: StartHot: err = %v, want ErrInvalidSpec", name, err)
		}
		if _, err := d.Prestart(context.Background(), tc.spec); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: Prestart: err = %v, want ErrInvalidSpec", name, err)
		}
	}
}

func TestRunConcurrent(t *testing.T) {
	d, cli, spec := setup(t)
	spec.Image = build(t, cli, "echo").Tag
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
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
			res, err := d.Run(context.Background(), s, []byte(fmt.Sprintf(`{"i": %d}`, i)), 0, nil)
			mu.Lock()
			results[i], errs[i] = res, err
			mu.Unlock()
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
		tm := results[i].Timings
		sum.Create += tm.Create
		sum.Start += tm.Start
		sum.Wait += tm.Wait
		sum.Remove += tm.Remove
		sum.Total += tm.Total
	}
	t.Logf("%d concurrent runs in %v; mean create=%v start=%v wait=%v remove=%v total=%v", n, elapsed,
		sum.Create/n, sum.Start/n, sum.Wait/n, sum.Remove/n, sum.Total/n)
}

func TestNew(t *testing.T) {
	if _, err := docker.New(nil, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	dockertest.Client(t) // skips when no engine is reachable
	d, err := docker.NewFromEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestEngineUnavailable(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	d, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := engine.Spec{Image: "anything:latest"}
	_, runErr := d.Run(ctx, spec, []byte("{}"), 0, nil)
	_, prestartErr := d.Prestart(ctx, spec)
	_, hotErr := d.StartHot(ctx, spec)
	_, loadErr := d.LoadImage(ctx, strings.NewReader("whatever"))
	_, listErr := d.Images(ctx)
	_, removeErr := d.RemoveManaged(ctx, nil)
	for name, err := range map[string]error{
		"Ping": d.Ping(ctx), "Run": runErr, "Prestart": prestartErr, "StartHot": hotErr,
		"LoadImage": loadErr, "Images": listErr, "RemoveManaged": removeErr,
	} {
		if !errors.Is(err, engine.ErrEngineUnavailable) {
			t.Errorf("%s: err = %v, want ErrEngineUnavailable", name, err)
		}
	}
}

// throughProxy returns a driver that reaches the engine of realCli through
// a proxy the test can stop and start.
func throughProxy(t *testing.T, realCli *client.Client) (*docker.Docker, *dockertest.Proxy) {
	t.Helper()
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
	return d, proxy
}

// TestEngineRecovery takes the engine away and brings it back through a
// proxy socket: the same Docker fails with ErrEngineUnavailable while it is
// gone, and works again once it is back.
func TestEngineRecovery(t *testing.T) {
	_, realCli, spec := setup(t)
	spec.Image = build(t, realCli, "echo").Tag
	d, proxy := throughProxy(t, realCli)
	ctx := context.Background()
	run := func() error {
		res, err := d.Run(ctx, spec, []byte(`{"n": 1}`), 0, nil)
		if err == nil && (res.ExitCode != 0 || !bytes.Contains(res.Stdout, []byte(`"n":1`))) {
			return fmt.Errorf("exit %d, stdout %q", res.ExitCode, res.Stdout)
		}
		return err
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	if err := run(); err != nil {
		t.Fatalf("run through the proxy: %v", err)
	}

	proxy.Stop()
	if err := d.Ping(ctx); !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("ping while down: %v, want ErrEngineUnavailable", err)
	}
	if err := run(); !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("run while down: %v, want ErrEngineUnavailable", err)
	}

	proxy.Start()
	if err := d.Ping(ctx); err != nil {
		t.Errorf("ping once back: %v", err)
	}
	if err := run(); err != nil {
		t.Errorf("run once back: %v", err)
	}
}

// TestEngineLostMidRun cuts the engine off while a function runs: Run
// reports ErrEngineUnavailable, and RemoveManaged collects the container once
// the engine is back, as the server does at start-up.
func TestEngineLostMidRun(t *testing.T) {
	_, realCli, spec := setup(t)
	spec.Image = build(t, realCli, "sleep").Tag
	d, proxy := throughProxy(t, realCli)
	onStart := func(string, string) error {
		time.AfterFunc(300*time.Millisecond, proxy.Stop)
		return nil
	}
	begin := time.Now()
	_, err := d.Run(context.Background(), spec, nil, 0, onStart)
	if !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("err = %v, want ErrEngineUnavailable", err)
	}
	if elapsed := time.Since(begin); elapsed > 15*time.Second {
		t.Errorf("Run took %v to notice", elapsed)
	}

	proxy.Start()
	n, err := d.RemoveManaged(context.Background(), spec.Labels)
	if err != nil || n != 1 {
		t.Errorf("RemoveManaged = %d, %v; want the 1 container left behind", n, err)
	}
}

func TestRemoveManaged(t *testing.T) {
	d, cli, spec := setup(t)
	img := build(t, cli, "sleep")
	ctx := context.Background()
	create := func(labels map[string]string) string {
		t.Helper()
		c, err := cli.ContainerCreate(ctx, &container.Config{Image: img.ID, Labels: labels}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	key := dockertest.TestRunLabel
	value := spec.Labels[key]
	managed := create(map[string]string{key: value, docker.LabelManaged: "true", docker.LabelFunction: "f1"})
	running := create(map[string]string{key: value, docker.LabelManaged: "true", docker.LabelFunction: "f2"})
	if err := cli.ContainerStart(ctx, running, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	unmanaged := create(map[string]string{key: value})
	defer cli.ContainerRemove(ctx, unmanaged, container.RemoveOptions{Force: true})

	// A narrower selector leaves the other function's container alone.
	if n, err := d.RemoveManaged(ctx, map[string]string{key: value, docker.LabelFunction: "f1"}); err != nil || n != 1 {
		t.Fatalf("RemoveManaged(f1) = %d, %v; want 1", n, err)
	}
	assertRemoved(t, cli, managed)
	if n, err := d.RemoveManaged(ctx, map[string]string{key: value}); err != nil || n != 1 {
		t.Fatalf("RemoveManaged = %d, %v; want 1 (the running one)", n, err)
	}
	assertRemoved(t, cli, running)
	if _, err := cli.ContainerInspect(ctx, unmanaged); err != nil {
		t.Errorf("a container without %s=true was touched: %v", docker.LabelManaged, err)
	}
}

func TestLoadImage(t *testing.T) {
	d, cli, _ := setup(t)
	img := build(t, cli, "echo")
	ctx := context.Background()

	// Save the image under a tag of its own, drop the tag, load it back.
	tag := dockertest.UniqueTag("loaded")
	if err := cli.ImageTag(ctx, img.ID, tag); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageAtCleanup(t, cli, tag)
	rc, err := cli.ImageSave(ctx, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ImageRemove(ctx, tag, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}

	tags, err := d.LoadImage(ctx, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags[0] != tag {
		t.Errorf("LoadImage = %q, want [%q]", tags, tag)
	}
	loaded, err := cli.ImageInspect(ctx, tag)
	if err != nil || loaded.ID != img.ID {
		t.Errorf("loaded image %q: ID %q, err %v; want %q", tag, loaded.ID, err, img.ID)
	}

	for name, archive := range map[string][]byte{
		"garbage":   []byte("this is not a tar archive"),
		"empty tar": make([]byte, 1024), // two zero blocks: a valid, empty tar
	} {
		tags, err := d.LoadImage(ctx, bytes.NewReader(archive))
		if !errors.Is(err, engine.ErrBadImage) {
			t.Errorf("%s: LoadImage = %q, %v; want ErrBadImage", name, tags, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestImages(t *testing.T) {
	d, cli, _ := setup(t)
	img := build(t, cli, "echo")
	ids, err := d.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for tag := range ids {
		if tag == "<none>:<none>" || tag == "" {
			t.Errorf("Images lists %q", tag)
		}
	}
	if ids[img.Tag] != img.ID {
		t.Errorf("Images maps %q to %q, want %q", img.Tag, ids[img.Tag], img.ID)
	}
}
