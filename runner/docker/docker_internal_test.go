package docker

import (
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
	createErr, startErr error

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
	if f.createErr != nil {
		return container.CreateResponse{}, f.createErr
	}
	return container.CreateResponse{ID: "c1"}, nil
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

// TestStartDetachedRemovesOnFailure checks the paths that end
// StartDetached early: a container it created is removed, and none is
// started when it could not be created.
func TestStartDetachedRemovesOnFailure(t *testing.T) {
	errEngine := errors.New("engine said no")
	for name, tc := range map[string]struct {
		api     *fakeAPI
		removed bool
	}{
		"create fails": {api: &fakeAPI{createErr: errEngine}},
		"start fails":  {api: &fakeAPI{startErr: errEngine}, removed: true},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDocker(tc.api, nil)
			c, err := d.StartDetached(context.Background(), engine.Spec{Image: "img"})
			if !errors.Is(err, errEngine) || c != nil {
				t.Errorf("StartDetached = %v, %v; want no container and %v", c, err, errEngine)
			}
			if got := tc.api.called("remove"); got != tc.removed {
				t.Errorf("container removed: %v, want %v; calls %v", got, tc.removed, tc.api.calls)
			}
			if name == "create fails" && tc.api.called("start") {
				t.Errorf("a container started with none created; calls %v", tc.api.calls)
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

func TestParseConstraints(t *testing.T) {
	got, err := ParseConstraints(" node.role==worker, node.labels.fn!=no ,")
	if err != nil || !slices.Equal(got, []string{"node.role==worker", "node.labels.fn!=no"}) {
		t.Errorf("ParseConstraints: %q %v", got, err)
	}
	for _, bad := range []string{"node.role", "==worker", "node.role!=", "node.role=worker"} {
		if _, err := ParseConstraints(bad); err == nil {
			t.Errorf("ParseConstraints(%q): no error", bad)
		}
	}
}
