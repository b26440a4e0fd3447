package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// Defaults applied to the zero fields of a [Spec], and fixed limits.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMemoryMB    = 256
	DefaultOutputLimit = 1 << 20 // bytes, for stdout and for stderr
	DefaultNetwork     = "bridge"

	// PidsLimit caps the processes and threads of every container.
	PidsLimit = 256
	// MinMemoryMB is the smallest memory limit the engine accepts.
	MinMemoryMB = 6
)

// Internal bounds on the steps that run detached from the caller's context.
const (
	createTimeout  = 60 * time.Second
	inspectTimeout = 30 * time.Second
	// killWait is how long a killed container may take to be reported exited.
	killWait = 10 * time.Second
	// drainTimeout is how long output may still arrive after the exit.
	drainTimeout = 5 * time.Second
	// pingTimeout bounds the check of whether the engine is still there.
	pingTimeout = 5 * time.Second
)

// Spec describes one invocation.
type Spec struct {
	// FunctionID and InvocationID label the container; FunctionName only
	// appears in the logs.
	FunctionID   string
	FunctionName string
	InvocationID string
	// Image is a tag or an image ID. It is resolved to an ID once, and the
	// container is created from that ID.
	Image string
	Env   map[string]string
	// Input is written to the container's stdin, which is then closed.
	Input []byte
	// Timeout bounds the run, from the container's start to its exit
	// (DefaultTimeout when zero). Past it the container is killed.
	Timeout time.Duration
	// MemoryMB is the memory limit, swap excluded (DefaultMemoryMB when zero).
	MemoryMB int64
	// CPUs is a CPU quota, such as 0.5; zero means no quota.
	CPUs float64
	// Network is "bridge" (when empty), "none" or the name of a user-defined
	// network. "host" and the "container:" modes are refused.
	Network string
	// OutputLimit is how many bytes of stdout, and of stderr, are kept
	// (DefaultOutputLimit when zero). Past it the container is killed.
	OutputLimit int64
	// ReadOnly mounts the image's filesystem read-only, with a small
	// tmpfs on /tmp for scratch files.
	ReadOnly bool
	// Labels are added to the container's; they cannot replace the
	// minilambda.* labels the runner sets.
	Labels map[string]string
	// OnStart, when set, is called once the container has started, with its
	// ID and the image ID. If it returns an error the container is killed and
	// removed, and Run returns that error (wrapped).
	OnStart func(containerID, imageDigest string) error
}

// Result is what an invocation did. A function that failed, timed out, ran
// out of memory or flooded its output still has a Result; [Result.ErrorType]
// says which.
type Result struct {
	ContainerID string
	// ImageDigest is the ID ("sha256:...") of the image that ran.
	ImageDigest string

	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool

	ExitCode int
	// OOMKilled is the engine's word that the kernel's OOM killer struck.
	OOMKilled bool
	// TimedOut means the container was killed at Spec.Timeout.
	TimedOut bool
	// OutputLimited means stdout or stderr passed Spec.OutputLimit, and the
	// container was killed.
	OutputLimited bool

	// StartedAt is when the container had started, CompletedAt when its exit
	// was seen, and Duration the time between them.
	StartedAt, CompletedAt time.Time
	Duration               time.Duration

	Timings Timings
}

// Timings breaks the wall time of [Docker.Run] down by engine call.
type Timings struct {
	Image   time.Duration // ImageInspect
	Create  time.Duration // ContainerCreate
	Attach  time.Duration // ContainerAttach
	Start   time.Duration // ContainerStart
	Wait    time.Duration // from started to exited (Result.Duration)
	Inspect time.Duration // ContainerInspect after the exit
	Remove  time.Duration // ContainerRemove
	Total   time.Duration // all of Run
}

// ErrorType classifies a failed invocation in the words of the HTTP API:
// "timeout", "output_limit", "out_of_memory" or "function_error"; it is ""
// for a success (exit code 0 within the limits). An OOM kill counts only when
// the function also exited non-zero.
func (r Result) ErrorType() string {
	switch {
	case r.TimedOut:
		return "timeout"
	case r.OutputLimited:
		return "output_limit"
	case r.OOMKilled && r.ExitCode != 0:
		return "out_of_memory"
	case r.ExitCode != 0:
		return "function_error"
	}
	return ""
}

// normalize checks s and fills in the defaults.
func (s Spec) normalize() (Spec, error) {
	switch {
	case strings.TrimSpace(s.Image) == "":
		return s, fmt.Errorf("%w: empty image", ErrInvalidSpec)
	case s.Timeout < 0:
		return s, fmt.Errorf("%w: negative timeout", ErrInvalidSpec)
	case s.MemoryMB < 0 || (s.MemoryMB > 0 && s.MemoryMB < MinMemoryMB):
		return s, fmt.Errorf("%w: memory must be at least %d MB", ErrInvalidSpec, MinMemoryMB)
	case s.CPUs < 0:
		return s, fmt.Errorf("%w: negative cpus", ErrInvalidSpec)
	case s.OutputLimit < 0:
		return s, fmt.Errorf("%w: negative output limit", ErrInvalidSpec)
	case s.Network == "host" || strings.Contains(s.Network, ":"):
		return s, fmt.Errorf("%w: network %q is not allowed", ErrInvalidSpec, s.Network)
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return s, fmt.Errorf("%w: bad environment variable name %q", ErrInvalidSpec, k)
		}
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = DefaultMemoryMB
	}
	if s.OutputLimit == 0 {
		s.OutputLimit = DefaultOutputLimit
	}
	if s.Network == "" {
		s.Network = DefaultNetwork
	}
	return s, nil
}

// containerConfig is the container for s, created from the image ID.
func (s Spec) containerConfig(imageID string) (*container.Config, *container.HostConfig) {
	env := make([]string, 0, len(s.Env))
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+s.Env[k])
	}
	labels := make(map[string]string, len(s.Labels)+3)
	maps.Copy(labels, s.Labels)
	labels[LabelManaged] = "true"
	labels[LabelFunction] = s.FunctionID
	labels[LabelInvocation] = s.InvocationID

	memory := s.MemoryMB << 20
	pids := int64(PidsLimit)
	config := &container.Config{
		Image:        imageID,
		Env:          env,
		Labels:       labels,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		OpenStdin:    true,
		StdinOnce:    true,
		Tty:          false,
		// Entrypoint and Cmd stay nil: the image's own run.
	}
	hostConfig := &container.HostConfig{
		NetworkMode: container.NetworkMode(s.Network),
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		Privileged:  false,
		// Output reaches the runner through the attach stream only.
		LogConfig:      container.LogConfig{Type: "none"},
		ReadonlyRootfs: s.ReadOnly,
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory, // no swap
			NanoCPUs:   int64(s.CPUs * 1e9),
			PidsLimit:  &pids,
		},
	}
	if s.ReadOnly {
		hostConfig.Tmpfs = map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=64m"}
	}
	return config, hostConfig
}

// containerName names a container after its invocation, with a random
// suffix so that a retried invocation never collides with its first attempt.
func containerName(invocationID string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return -1
	}, invocationID)
	if len(clean) > 64 {
		clean = clean[:64]
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	if clean == "" {
		return "minilambda-" + hex.EncodeToString(suffix[:])
	}
	return "minilambda-" + clean + "-" + hex.EncodeToString(suffix[:])
}

// runErr wraps an engine error, or the context's error when the caller's
// context is what ended the call. An error that does not tell by itself
// whether the engine is still there (a stream cut short) is checked with a
// ping.
func (d *Docker) runErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("runner: %s: invocation abandoned: %w", op, ctxErr)
	}
	if !isUnavailable(err) {
		pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		if _, pingErr := d.api.Ping(pingCtx); pingErr != nil && (isUnavailable(pingErr) || pingCtx.Err() != nil) {
			return fmt.Errorf("%w: %s: %w", ErrEngineUnavailable, op, err)
		}
	}
	return wrapEngineErr(op, err)
}
