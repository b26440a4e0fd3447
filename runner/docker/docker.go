package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/runner/engine"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Labels put on every container the driver creates.
const (
	LabelManaged    = "minilambda.managed"
	LabelFunction   = "minilambda.function"
	LabelInvocation = "minilambda.invocation"
)

// dockerAPI lists the Docker SDK calls this package makes, and nothing else, so
// that a fake can stand in for the engine. *client.Client implements it.
type dockerAPI interface {
	Ping(ctx context.Context) (types.Ping, error)

	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)

	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig,
		networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, opts container.StartOptions) error
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerRemove(ctx context.Context, containerID string, opts container.RemoveOptions) error
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
}

var (
	_ dockerAPI     = (*client.Client)(nil)
	_ engine.Driver = (*Docker)(nil)
)

// Docker runs functions on a Docker engine. It is safe for concurrent use.
type Docker struct {
	api    dockerAPI
	logger *slog.Logger
	closer io.Closer // the client, when the Docker created it
}

// New returns a Docker that talks to the engine through cli. The caller keeps
// ownership of cli. New does not contact the engine: the server can start
// while the engine is down, and [Docker.Ping] tells whether it is up.
// A nil logger discards.
func New(cli *client.Client, logger *slog.Logger) (*Docker, error) {
	if cli == nil {
		return nil, errors.New("docker: nil client")
	}
	return newDocker(cli, logger), nil
}

// NewFromEnv returns a Docker whose client is configured from the
// environment (DOCKER_HOST, DOCKER_CERT_PATH, ...), negotiating the API
// version with the engine. [Docker.Close] closes that client.
func NewFromEnv(logger *slog.Logger) (*Docker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w", err)
	}
	d := newDocker(cli, logger)
	d.closer = cli
	return d, nil
}

func newDocker(api dockerAPI, logger *slog.Logger) *Docker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Docker{api: api, logger: logger.With("subsystem", "docker")}
}

// Close releases the client if [NewFromEnv] created it. It does not stop
// running invocations: the caller drains them first.
func (d *Docker) Close() error {
	if d.closer == nil {
		return nil
	}
	return d.closer.Close()
}

// Ping checks that the engine answers. It returns an error wrapping
// engine.ErrEngineUnavailable when the engine cannot be reached.
func (d *Docker) Ping(ctx context.Context) error {
	_, err := d.api.Ping(ctx)
	return wrapEngineErr("ping", err)
}

// RemoveManaged forcibly removes every container, in any state, that carries
// the label minilambda.managed=true and all the labels in selector (a label
// with an empty value matches any value). The server calls it at start-up to
// clean up after a crash. It returns how many containers were removed, and
// the errors of those that could not be.
func (d *Docker) RemoveManaged(ctx context.Context, selector map[string]string) (int, error) {
	list, err := d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter(selector)})
	if err != nil {
		return 0, wrapEngineErr("list containers", err)
	}
	var (
		n    int
		errs []error
	)
	for _, c := range list {
		err := d.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		switch {
		case err == nil:
			n++
			d.logger.InfoContext(ctx, "removed leftover container", "container_id", c.ID, "labels", c.Labels)
		case isNotFound(err):
			// Removed meanwhile, by its own Run.
		default:
			errs = append(errs, wrapEngineErr("remove container "+shortID(c.ID), err))
		}
	}
	return n, errors.Join(errs...)
}

// managedFilter selects what the driver made that carries all the labels
// in selector (a label with an empty value matches any value).
func managedFilter(selector map[string]string) filters.Args {
	args := filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
	for k, v := range selector {
		if v == "" {
			args.Add("label", k)
		} else {
			args.Add("label", k+"="+v)
		}
	}
	return args
}

// removeTimeout bounds the removal of one container, which runs even after
// the caller's context is done.
const removeTimeout = 30 * time.Second

// remove forcibly removes a container, retrying briefly when the engine is
// busy with it (a kill in progress), and logs when it cannot. The logger
// names the container.
func (d *Docker) remove(ctx context.Context, id string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	opts := container.RemoveOptions{Force: true, RemoveVolumes: true}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		err = d.api.ContainerRemove(ctx, id, opts)
		if err == nil || isNotFound(err) {
			return
		}
		if isUnavailable(err) || ctx.Err() != nil {
			break
		}
	}
	logger.ErrorContext(ctx, "container not removed; RemoveManaged will collect it", "error", err)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
