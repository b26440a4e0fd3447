package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

func TestNew(t *testing.T) {
	if _, err := agent.New(agent.Options{Init: "/some/init"}); err == nil {
		t.Error("New with no engine: no error")
	}
	if _, err := agent.New(agent.Options{Engine: &fakeEngine{}}); err == nil {
		t.Error("New with neither an init nor a directory to build one in: no error")
	}
	h, err := agent.New(agent.Options{Engine: &fakeEngine{}, Init: "/some/init"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	if h.Region() != agent.DefaultRegion || agent.DefaultRegion != "us-east-1" {
		t.Errorf("Region %q; want %q", h.Region(), "us-east-1")
	}
	h2, _ := newHost(t, agent.Options{Region: "eu-north-1"})
	if h2.Region() != "eu-north-1" {
		t.Errorf("Region %q; want eu-north-1", h2.Region())
	}
}

func TestARN(t *testing.T) {
	if got, want := agent.ARN("sa-east-1", "my-fn"), "arn:aws:lambda:sa-east-1:000000000000:function:my-fn"; got != want {
		t.Errorf("ARN %q; want %q", got, want)
	}
}

func TestStartSpec(t *testing.T) {
	for _, tc := range []struct {
		name        string
		outputLimit int64
		wantLimit   string
	}{
		{"default output limit", 0, "1048576"},
		{"output limit of the spec", 4096, "4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			in := testSpec()
			in.OutputLimit = tc.outputLimit
			in.Mounts = []engine.Mount{{Source: "/srv/models", Target: "/opt/models"}}
			c := startWith(t, h, eng, in, testFunction)
			s := c.spec

			dir := filepath.Dir(c.socket)
			wantMounts := []engine.Mount{
				{Source: "/srv/models", Target: "/opt/models"},
				{Source: dir, Target: "/run/minilambda/api"},
				{Source: staticInit(t), Target: "/run/minilambda/init"},
			}
			if !reflect.DeepEqual(s.Mounts, wantMounts) {
				t.Errorf("Mounts %+v; want %+v", s.Mounts, wantMounts)
			}
			wantWrap := []string{"/run/minilambda/init", "-mode", "lambda", "-socket", "/run/minilambda/api/rapi.sock", "-limit", tc.wantLimit, "--"}
			if !reflect.DeepEqual(s.Wrap, wantWrap) {
				t.Errorf("Wrap %q; want %q", s.Wrap, wantWrap)
			}
			// The secret is the init's alone, and each container's own.
			if len(s.WrapEnv) != 1 || len(c.secret) != secretLen {
				t.Errorf("WrapEnv %q; want the container's secret alone", s.WrapEnv)
			}
			if s.Image != in.Image || s.FunctionID != in.FunctionID || s.MemoryMB != function.DefaultMemoryMB || s.Network != function.DefaultNetwork {
				t.Errorf("spec %+v; want the caller's, normalized", s)
			}
			// The engine checks the spec again before it starts anything.
			if _, err := s.Normalize(); err != nil {
				t.Errorf("the engine would refuse the spec: %v", err)
			}
			// The caller's spec is its own still.
			if len(in.Mounts) != 1 || len(in.Env) != 1 || in.Wrap != nil {
				t.Errorf("the caller's spec changed: %+v", in)
			}

			fi, err := os.Stat(dir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("socket directory %s: %v, %v; want a directory, 0755", dir, fi.Mode(), err)
			}
			parent, err := os.Stat(filepath.Dir(dir))
			if err != nil || parent.Mode().Perm() != 0o700 {
				t.Errorf("the sockets' directory: %v, %v; want 0700", parent.Mode(), err)
			}
			sock, err := os.Stat(c.socket)
			if err != nil || sock.Mode().Type() != os.ModeSocket || sock.Mode().Perm() != 0o666 {
				t.Errorf("socket %s: %v, %v; want a socket, 0666", c.socket, sock.Mode(), err)
			}
			if n := len(c.socket); n >= 108 {
				t.Errorf("socket path of %d bytes; a unix socket's must be shorter than 108", n)
			}

			// Each container has a directory of its own, beside the others.
			other := start(t, h, eng)
			if filepath.Dir(other.socket) == dir || filepath.Dir(filepath.Dir(other.socket)) != filepath.Dir(dir) {
				t.Errorf("second socket %s beside %s; want its own directory in the same place", other.socket, c.socket)
			}
			if bytes.Equal(other.secret, c.secret) {
				t.Errorf("two containers share the secret %x", c.secret)
			}
		})
	}
}

// The engine refuses a spec whose mounts are not absolute (the Docker
// driver normalizes the spec again), so the init's path must be absolute
// whatever path the host was given: --lambda-init and the directory of
// --db are the operator's, and may be relative.
func TestStartMountsTheInitByAbsolutePath(t *testing.T) {
	bin := staticInit(t)
	t.Run("Init", func(t *testing.T) {
		t.Chdir(filepath.Dir(bin))
		h, eng := newHost(t, agent.Options{Init: filepath.Base(bin)})
		c := start(t, h, eng)
		wantAbsoluteMounts(t, c.spec)
	})
	t.Run("InitDir", func(t *testing.T) {
		work := t.TempDir()
		if err := os.Mkdir(filepath.Join(work, "lambda-init"), 0o700); err != nil {
			t.Fatal(err)
		}
		// A build of this source already there: BuildInit takes it.
		copyFile(t, bin, filepath.Join(work, "lambda-init", filepath.Base(bin)), 0o755)
		t.Chdir(work)
		h, eng := newHost(t, agent.Options{InitDir: "lambda-init"})
		c := start(t, h, eng)
		wantAbsoluteMounts(t, c.spec)
	})
}

func wantAbsoluteMounts(t *testing.T, s engine.Spec) {
	t.Helper()
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Source) {
			t.Errorf("mount of %q on %s: the source is not absolute", m.Source, m.Target)
		}
	}
	if _, err := s.Normalize(); err != nil {
		t.Errorf("the engine would refuse the spec: %v", err)
	}
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, perm); err != nil {
		t.Fatal(err)
	}
}

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestStartFailures(t *testing.T) {
	t.Run("an init that cannot run in a container", func(t *testing.T) {
		for _, path := range []string{"/bin/true", filepath.Join(t.TempDir(), "missing")} {
			h, eng := newHost(t, agent.Options{Init: path})
			if _, err := h.StartLambda(t.Context(), testSpec(), testFunction); !errors.Is(err, agent.ErrNoInit) {
				t.Errorf("Start with init %s: %v; want agent.ErrNoInit", path, err)
			}
			if _, err := h.Init(t.Context()); !errors.Is(err, agent.ErrNoInit) {
				t.Errorf("Init with init %s: %v; want agent.ErrNoInit", path, err)
			}
			if n := eng.started(); n != 0 {
				t.Errorf("the engine was asked to start %d containers", n)
			}
		}
	})
	t.Run("an invalid spec", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		parent := filepath.Dir(filepath.Dir(start(t, h, eng).socket))
		before := entries(t, parent)
		bad := testSpec()
		bad.Image = ""
		if _, err := h.StartLambda(t.Context(), bad, testFunction); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("StartLambda: %v; want engine.ErrInvalidSpec", err)
		}
		if n := eng.started(); n != 1 {
			t.Errorf("the engine was asked to start %d containers; want only the first", n)
		}
		if after := entries(t, parent); !reflect.DeepEqual(after, before) {
			t.Errorf("socket directories %q after a failed start; want %q", after, before)
		}
	})
	t.Run("the engine fails", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		parent := filepath.Dir(filepath.Dir(start(t, h, eng).socket))
		before := entries(t, parent)
		eng.mu.Lock()
		eng.err = engine.ErrImageNotFound
		eng.mu.Unlock()
		if _, err := h.StartLambda(t.Context(), testSpec(), testFunction); !errors.Is(err, engine.ErrImageNotFound) {
			t.Errorf("StartLambda: %v; want the engine's error", err)
		}
		if after := entries(t, parent); !reflect.DeepEqual(after, before) {
			t.Errorf("socket directories %q after a failed start; want %q", after, before)
		}
	})
}

func TestHostClose(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	a, b := start(t, h, eng), start(t, h, eng)
	a.connect(nil)
	parent := filepath.Dir(filepath.Dir(a.socket))

	h.Close(context.Background())
	for _, c := range []*ctr{a, b} {
		if !c.fake.isClosed() || c.hot.Alive() {
			t.Errorf("container %s: closed %v, alive %v; want it closed", c.hot.ID(), c.fake.isClosed(), c.hot.Alive())
		}
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Errorf("the sockets' directory after Close: %v; want it removed", err)
	}
	if _, err := h.StartLambda(t.Context(), testSpec(), testFunction); err == nil {
		t.Error("Start after Close: no error")
	}
	if n := eng.started(); n != 2 {
		t.Errorf("the engine was asked to start %d containers; want 2", n)
	}
	h.Close(context.Background()) // twice is fine
}

// A container that starts while the host closes is closed, not kept.
func TestHostCloseWhileStarting(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	var dir string
	eng.hook = func(s engine.Spec) {
		dir = filepath.Dir(socketPath(t, s))
		h.Close(context.Background())
	}
	if _, err := h.StartLambda(t.Context(), testSpec(), testFunction); err == nil {
		t.Fatal("Start while the host closed: no error")
	}
	if len(eng.conts) != 1 || !eng.conts[0].isClosed() {
		t.Fatal("the container started as the host closed was not closed")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("its socket directory: %v; want it removed", err)
	}
}

func TestHostInit(t *testing.T) {
	t.Run("built in InitDir", func(t *testing.T) {
		want := staticInit(t) // the same source, in the same directory
		h, _ := newHost(t, agent.Options{InitDir: filepath.Dir(want)})
		for range 2 {
			got, err := h.Init(t.Context())
			if err != nil || got != want {
				t.Fatalf("Init: %q, %v; want %q", got, err, want)
			}
		}
	})
	t.Run("cancelled while it builds", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "init")
		h, eng := newHost(t, agent.Options{InitDir: dir})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := h.Init(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Init: %v; want context.Canceled", err)
		}
		if _, err := h.StartLambda(ctx, testSpec(), testFunction); !errors.Is(err, context.Canceled) {
			t.Fatalf("StartLambda: %v; want context.Canceled", err)
		}
		if n := eng.started(); n != 0 {
			t.Errorf("the engine was asked to start %d containers", n)
		}
		// Close stops the build; Init then says how it ended.
		h.Close(context.Background())
		if _, err := h.Init(context.Background()); !errors.Is(err, agent.ErrNoInit) {
			t.Fatalf("Init after Close: %v; want agent.ErrNoInit", err)
		}
		if es, err := os.ReadDir(dir); err == nil && len(es) != 0 {
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			t.Errorf("the build left %s in %s", strings.Join(names, ", "), dir)
		}
	})
}

// A host removes the sockets' directory a killed run of the same server
// left (Options.Instance), and only that: the directories of other hosts,
// in this process or in another server of the machine, are in use.
func TestSocketDirectoriesOfOtherServers(t *testing.T) {
	t.Run("left by a killed run of the same server", func(t *testing.T) {
		stale, err := os.MkdirTemp("", agent.SocketDirPrefix("a1b2c3d4e5f6"))
		if err != nil {
			t.Fatal(err)
		}
		h, eng := newHost(t, agent.Options{Instance: "a1b2c3d4e5f6"})
		c := start(t, h, eng)
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("%s, a killed run's: %v; want it removed", stale, err)
		}
		if parent := filepath.Base(filepath.Dir(filepath.Dir(c.socket))); !strings.HasPrefix(parent, agent.SocketDirPrefix("a1b2c3d4e5f6")) {
			t.Errorf("sockets' directory %s; want it named after the instance", parent)
		}
	})
	for _, tc := range []struct {
		name   string
		first  string // the instance of the host that starts first
		second string
	}{
		{"another server", "a1b2c3d4e5f6", "0f1e2d3c4b5a"},
		{"two hosts with no instance", "", ""},
		{"a server beside a host with no instance", "a1b2c3d4e5f6", ""},
		{"a host with no instance beside a server", "", "a1b2c3d4e5f6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h1, eng1 := newHost(t, agent.Options{Instance: tc.first})
			first := start(t, h1, eng1)
			first.connect(nil)
			h2, eng2 := newHost(t, agent.Options{Instance: tc.second})
			start(t, h2, eng2)
			if _, err := os.Stat(first.socket); err != nil {
				t.Fatalf("the first host's socket once the second started a container: %v", err)
			}
			// Its container still reaches its Runtime API.
			first.invoke("inv-1", nil, nil)
		})
	}
}

// A unix socket's path has at most 107 bytes: a host whose temporary
// directory is too deep to give one says so, and starts nothing.
func TestStartWithTooLongSocketPath(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", deep)
	h, eng := newHost(t, agent.Options{})
	_, err := h.StartLambda(t.Context(), testSpec(), testFunction)
	if err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("StartLambda: %v; want an error that says to set TMPDIR", err)
	}
	if n := eng.started(); n != 0 {
		t.Errorf("the engine was asked to start %d containers", n)
	}
	dirs, _ := filepath.Glob(filepath.Join(deep, "minilambda-rapi-*", "*"))
	if len(dirs) != 0 {
		t.Errorf("a failed start left %q", dirs)
	}
}
