package docker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
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

// build builds the test program runner/agent/testdata/<name>, which the
// agent's tests share.
func build(t *testing.T, cli *client.Client, name string) dockertest.Image {
	t.Helper()
	return dockertest.BuildGoImage(t, cli, "../agent/testdata/"+name, name)
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

// sleeper is the spec of a detached container of the sleep program, which
// runs for a minute unless it is closed.
func sleeper(t *testing.T, cli *client.Client, spec engine.Spec) engine.Spec {
	t.Helper()
	spec.Image = build(t, cli, "sleep").Tag
	return spec
}

// TestStartDetachedConfig checks the container a detached start makes: safe
// by default, limited as the spec says, labelled, with nothing attached.
func TestStartDetachedConfig(t *testing.T) {
	d, cli, spec := setup(t)
	img := build(t, cli, "sleep")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		network string
		cpus    float64
		memory  int
	}{
		{"defaults", "", 0, 0},
		{"network none and CPUs", "none", 0.5, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			s.Image = img.Tag
			s.Env = map[string]string{"GREETING": "hello"}
			s.WrapEnv = map[string]string{"WRAPPER_ONLY": "secret"}
			s.Network, s.CPUs, s.MemoryMB = tc.network, tc.cpus, tc.memory
			c, err := d.StartDetached(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				c.Close(ctx)
				assertRemoved(t, cli, c.ID())
			}()
			if c.ImageDigest() != img.ID {
				t.Errorf("ImageDigest = %q, want the image ID %q", c.ImageDigest(), img.ID)
			}
			info, err := cli.ContainerInspect(ctx, c.ID())
			if err != nil {
				t.Fatal(err)
			}
			hc := info.HostConfig
			memory := int64(function.DefaultMemoryMB) << 20
			if tc.memory != 0 {
				memory = int64(tc.memory) << 20
			}
			network := "bridge"
			if tc.network != "" {
				network = tc.network
			}
			env := strings.Join(info.Config.Env, "\n")
			checks := []struct {
				what string
				ok   bool
			}{
				{"running", info.State != nil && info.State.Running},
				{"label managed", info.Config.Labels[docker.LabelManaged] == "true"},
				{"label detached", info.Config.Labels[docker.LabelDetached] == "true"},
				{"label function", info.Config.Labels[docker.LabelFunction] == spec.FunctionID},
				{"label invocation", info.Config.Labels[docker.LabelInvocation] == spec.InvocationID},
				{"test label", info.Config.Labels[dockertest.TestRunLabel] == spec.Labels[dockertest.TestRunLabel]},
				{"image by ID", info.Image == img.ID},
				{"image entrypoint", len(info.Config.Entrypoint) == 1 && info.Config.Entrypoint[0] == "/fn" && info.Path == "/fn"},
				{"no tty", !info.Config.Tty},
				{"nothing attached", !info.Config.OpenStdin && !info.Config.AttachStdin && !info.Config.AttachStdout && !info.Config.AttachStderr},
				{"env", strings.Contains(env, "GREETING=hello")},
				{"the wrapper's env", strings.Contains(env, "WRAPPER_ONLY=secret")},
				{"cap drop all", len(hc.CapDrop) == 1 && strings.EqualFold(hc.CapDrop[0], "ALL")},
				{"no-new-privileges", len(hc.SecurityOpt) == 1 && hc.SecurityOpt[0] == "no-new-privileges"},
				{"not privileged", !hc.Privileged},
				{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == docker.PidsLimit},
				{"memory", hc.Memory == memory},
				{"no swap", hc.MemorySwap == hc.Memory},
				{"cpu quota", hc.NanoCPUs == int64(tc.cpus*1e9)},
				{"network", string(hc.NetworkMode) == network},
				{"no mounts", len(info.Mounts) == 0 && len(hc.Binds) == 0 && len(hc.Mounts) == 0},
				{"no logs on disk", hc.LogConfig.Type == "none"},
				{"not auto-removed", !hc.AutoRemove},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("container config: %s: not as expected (config %+v, host config %+v)", c.what, info.Config, hc)
				}
			}
		})
	}
}

// A container closed while it runs is killed and removed, and its exit is
// seen.
func TestStartDetachedClose(t *testing.T) {
	d, cli, spec := setup(t)
	ctx := context.Background()
	c, err := d.StartDetached(ctx, sleeper(t, cli, spec))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Exited():
		t.Fatal("Exited before the sleeper ended")
	case <-time.After(200 * time.Millisecond):
	}
	begin := time.Now()
	c.Close(ctx)
	if elapsed := time.Since(begin); elapsed > 15*time.Second {
		t.Errorf("Close took %v", elapsed)
	}
	select {
	case <-c.Exited():
	case <-time.After(10 * time.Second):
		t.Error("Exited not closed after Close")
	}
	assertRemoved(t, cli, c.ID())
	c.Close(ctx) // twice is fine
}

func TestStartDetachedImageNotFound(t *testing.T) {
	d, _, spec := setup(t)
	spec.Image = dockertest.UniqueTag("does-not-exist")
	if _, err := d.StartDetached(context.Background(), spec); !errors.Is(err, engine.ErrImageNotFound) {
		t.Fatalf("err = %v, want ErrImageNotFound", err)
	}
	if _, err := d.ImageID(context.Background(), spec.Image); !errors.Is(err, engine.ErrImageNotFound) {
		t.Fatalf("ImageID: err = %v, want ErrImageNotFound", err)
	}
}

func TestImageID(t *testing.T) {
	d, cli, _ := setup(t)
	img := build(t, cli, "echo")
	for _, ref := range []string{img.Tag, img.ID} {
		if id, err := d.ImageID(context.Background(), ref); err != nil || id != img.ID {
			t.Errorf("ImageID(%s) = %q, %v; want %q", ref, id, err, img.ID)
		}
	}
}

func TestStartDetachedInvalidSpec(t *testing.T) {
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
	for name, spec := range map[string]engine.Spec{
		"no image":          {},
		"bad image":         {Image: "UPPER/Case"},
		"host network":      {Image: "x", Network: "host"},
		"container network": {Image: "x", Network: "container:abc"},
		"tiny memory":       {Image: "x", MemoryMB: 1},
		"negative cpus":     {Image: "x", CPUs: -1},
		"negative limit":    {Image: "x", OutputLimit: -1},
		"bad env name":      {Image: "x", Env: map[string]string{"A=B": "c"}},
	} {
		if _, err := d.StartDetached(context.Background(), spec); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", name, err)
		}
	}
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
	_, startErr := d.StartDetached(ctx, spec)
	_, idErr := d.ImageID(ctx, spec.Image)
	_, loadErr := d.LoadImage(ctx, strings.NewReader("whatever"))
	_, listErr := d.Images(ctx)
	_, removeErr := d.RemoveManaged(ctx, nil)
	for name, err := range map[string]error{
		"Ping": d.Ping(ctx), "StartDetached": startErr, "ImageID": idErr,
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
	spec = sleeper(t, realCli, spec)
	d, proxy := throughProxy(t, realCli)
	ctx := context.Background()
	start := func() error {
		c, err := d.StartDetached(ctx, spec)
		if err != nil {
			return err
		}
		c.Close(ctx)
		assertRemoved(t, realCli, c.ID())
		return nil
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	if err := start(); err != nil {
		t.Fatalf("start through the proxy: %v", err)
	}

	proxy.Stop()
	if err := d.Ping(ctx); !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("ping while down: %v, want ErrEngineUnavailable", err)
	}
	if err := start(); !errors.Is(err, engine.ErrEngineUnavailable) {
		t.Errorf("start while down: %v, want ErrEngineUnavailable", err)
	}

	proxy.Start()
	if err := d.Ping(ctx); err != nil {
		t.Errorf("ping once back: %v", err)
	}
	if err := start(); err != nil {
		t.Errorf("start once back: %v", err)
	}
}

// TestEngineLostWhileRunning cuts the engine off while a detached
// container runs: it is not taken for exited, Close cannot remove it, and
// RemoveManaged collects it once the engine is back, as the server does at
// start-up.
func TestEngineLostWhileRunning(t *testing.T) {
	_, realCli, spec := setup(t)
	spec = sleeper(t, realCli, spec)
	d, proxy := throughProxy(t, realCli)
	ctx := context.Background()
	c, err := d.StartDetached(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Stop()
	// engine.Detached: Exited closes once the container has stopped
	// running. It runs on; only the engine's connection went.
	select {
	case <-c.Exited():
		code, oom := c.ExitState(ctx)
		t.Errorf("Exited closed while the container still runs, with the engine unreachable; ExitState says exit %d (OOM %v)", code, oom)
	case <-time.After(time.Second):
	}
	begin := time.Now()
	c.Close(ctx)
	if elapsed := time.Since(begin); elapsed > 15*time.Second {
		t.Errorf("Close took %v to give up", elapsed)
	}
	info, err := realCli.ContainerInspect(ctx, c.ID())
	if err != nil || info.State == nil || !info.State.Running {
		t.Fatalf("the container while the engine was away: %v; want it running still", err)
	}

	proxy.Start()
	n, err := d.RemoveManaged(ctx, spec.Labels)
	if err != nil || n != 1 {
		t.Errorf("RemoveManaged = %d, %v; want the 1 container left behind", n, err)
	}
	assertRemoved(t, realCli, c.ID())
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
