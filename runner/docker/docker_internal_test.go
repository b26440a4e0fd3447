package docker

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/runner/engine"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeAPI stands in for the engine in the paths a real engine makes hard
// to reach. Calls it does not implement panic through the nil interface.
type fakeAPI struct {
	dockerAPI
	attachErr, startErr error

	mu    sync.Mutex
	calls []string
}

var _ dockerAPI = (*fakeAPI)(nil)

func (f *fakeAPI) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeAPI) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, call)
}

func (f *fakeAPI) Ping(context.Context) (types.Ping, error) { return types.Ping{}, nil }

func (f *fakeAPI) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: "sha256:fake"}, nil
}

func (f *fakeAPI) ContainerCreate(context.Context, *container.Config, *container.HostConfig,
	*network.NetworkingConfig, *ocispec.Platform, string) (container.CreateResponse, error) {
	f.record("create")
	return container.CreateResponse{ID: "c1"}, nil
}

func (f *fakeAPI) ContainerAttach(context.Context, string, container.AttachOptions) (types.HijackedResponse, error) {
	f.record("attach")
	if f.attachErr != nil {
		return types.HijackedResponse{}, f.attachErr
	}
	conn, engine := net.Pipe()
	engine.Close() // no output: the stream ends at once
	return types.HijackedResponse{Conn: conn, Reader: bufio.NewReader(conn)}, nil
}

// ContainerWait never sees an exit; like the SDK's, it reports the end of
// its context as an error.
func (f *fakeAPI) ContainerWait(ctx context.Context, _ string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	errC := make(chan error, 1)
	go func() {
		<-ctx.Done()
		errC <- ctx.Err()
	}()
	return make(chan container.WaitResponse), errC
}

func (f *fakeAPI) ContainerStart(context.Context, string, container.StartOptions) error {
	f.record("start")
	return f.startErr
}

func (f *fakeAPI) ContainerKill(context.Context, string, string) error {
	f.record("kill")
	return nil
}

func (f *fakeAPI) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	f.record("remove")
	return nil
}

// TestRunRemovesOnEveryFailure checks the paths that end Run early: each
// removes the container it created.
func TestRunRemovesOnEveryFailure(t *testing.T) {
	errEngine := errors.New("engine said no")
	errOnStart := errors.New("on start failed")
	for name, tc := range map[string]struct {
		api     *fakeAPI
		onStart func(string, string) error
		want    error
		kill    bool
	}{
		"attach fails":  {api: &fakeAPI{attachErr: errEngine}, want: errEngine},
		"start fails":   {api: &fakeAPI{startErr: errEngine}, want: errEngine},
		"OnStart fails": {api: &fakeAPI{}, onStart: func(string, string) error { return errOnStart }, want: errOnStart, kill: true},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDocker(tc.api, nil)
			_, err := d.Run(context.Background(), engine.Spec{Image: "img"}, nil, 0, tc.onStart)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !tc.api.called("remove") {
				t.Errorf("container not removed; calls %v", tc.api.calls)
			}
			if tc.kill && !tc.api.called("kill") {
				t.Errorf("container not killed; calls %v", tc.api.calls)
			}
		})
	}
}

func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "unix", Err: syscall.ENOENT}, true},
		{syscall.ECONNREFUSED, true},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("No such image: x"), false},
	} {
		if got := isUnavailable(tc.err); got != tc.want {
			t.Errorf("isUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestCapBuffer(t *testing.T) {
	exceeded := 0
	c := newCapBuffer(6, func() { exceeded++ })
	for _, s := range []string{"abc", "defgh", "ij"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	got, truncated := c.bytes()
	if string(got) != "abcdef" || !truncated || exceeded != 1 {
		t.Errorf("kept %q, truncated %v, onExceed called %d times", got, truncated, exceeded)
	}
}
