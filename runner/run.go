package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
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

// Run executes one invocation in a fresh container and removes the container
// before it returns, whatever happened. See the package documentation for the
// steps. Cancelling ctx (the client hung up) kills and removes the container;
// Run then returns the partial Result and an error wrapping ctx.Err().
func (d *Docker) Run(ctx context.Context, s Spec) (res Result, err error) {
	begin := time.Now()
	defer func() { res.Timings.Total = time.Since(begin) }()
	s, err = s.normalize()
	if err != nil {
		return res, err
	}
	logger := d.logger.With("function_id", s.FunctionID, "function_name", s.FunctionName, "invocation_id", s.InvocationID)

	// Resolve the image to the ID that will run.
	t := time.Now()
	img, err := d.api.ImageInspect(ctx, s.Image)
	res.Timings.Image = time.Since(t)
	if err != nil {
		switch {
		case isNotFound(err):
			return res, fmt.Errorf("%w: %q", ErrImageNotFound, s.Image)
		case cerrdefs.IsInvalidArgument(err):
			return res, fmt.Errorf("%w: image %q: %w", ErrInvalidSpec, s.Image, err)
		}
		return res, d.runErr(ctx, "inspect image", err)
	}
	res.ImageDigest = img.ID

	// Create, detached from ctx: a create that completes after the caller
	// hung up would leave a container whose ID nobody knows.
	config, hostConfig := s.containerConfig(img.ID)
	t = time.Now()
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := d.api.ContainerCreate(createCtx, config, hostConfig, nil, nil, containerName(s.InvocationID))
	cancel()
	res.Timings.Create = time.Since(t)
	if err != nil {
		if isNotFound(err) {
			return res, fmt.Errorf("%w: %q (removed meanwhile)", ErrImageNotFound, s.Image)
		}
		return res, wrapEngineErr("create container", err)
	}
	id := created.ID
	res.ContainerID = id
	logger = logger.With("container_id", id)
	for _, w := range created.Warnings {
		logger.WarnContext(ctx, "container create warning", "warning", w)
	}
	defer func() {
		t := time.Now()
		d.remove(ctx, id, logger)
		res.Timings.Remove = time.Since(t)
	}()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("runner: invocation abandoned: %w", err)
	}

	// Attach before start, so that no output is missed.
	t = time.Now()
	hj, err := d.api.ContainerAttach(ctx, id, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	res.Timings.Attach = time.Since(t)
	if err != nil {
		return res, d.runErr(ctx, "attach container", err)
	}
	limitHit := make(chan struct{})
	var limitOnce sync.Once
	onExceed := func() { limitOnce.Do(func() { close(limitHit) }) }
	stdout := newCapBuffer(s.OutputLimit, onExceed)
	stderr := newCapBuffer(s.OutputLimit, onExceed)
	copyDone := make(chan struct{})
	go func() {
		defer close(copyDone)
		if _, err := stdcopy.StdCopy(stdout, stderr, hj.Reader); err != nil {
			logger.DebugContext(ctx, "output stream ended", "error", err)
		}
	}()
	stdinDone := make(chan struct{})
	stdinStarted := false
	defer func() {
		hj.Close() // ends the copier and the stdin writer, if still going
		<-copyDone
		if stdinStarted {
			<-stdinDone
		}
		res.Stdout, res.StdoutTruncated = stdout.bytes()
		res.Stderr, res.StderrTruncated = stderr.bytes()
	}()

	// Register the wait before start, so that the exit is never missed.
	waitCtx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	waitC, waitErrC := d.api.ContainerWait(waitCtx, id, container.WaitConditionNextExit)
	waited := false // whether the wait's answer, or its error, was received
	defer func() {
		cancelWait()
		if !waited {
			// The SDK's goroutine hands over exactly one of the two, and
			// the result without a buffer: take it, or it leaks.
			select {
			case <-waitC:
			case <-waitErrC:
			}
		}
	}()
	select {
	case err := <-waitErrC:
		waited = true
		return res, d.runErr(ctx, "wait container", err)
	default:
	}

	t = time.Now()
	err = d.api.ContainerStart(ctx, id, container.StartOptions{})
	res.Timings.Start = time.Since(t)
	if err != nil {
		return res, d.runErr(ctx, "start container", err)
	}
	res.StartedAt = time.Now()
	timer := time.NewTimer(s.Timeout)
	defer timer.Stop()

	stdinStarted = true
	go func() {
		defer close(stdinDone)
		if len(s.Input) > 0 {
			if _, err := hj.Conn.Write(s.Input); err != nil {
				// The function exited without reading all of its input.
				logger.DebugContext(ctx, "write stdin", "error", err)
				return
			}
		}
		if err := hj.CloseWrite(); err != nil {
			logger.DebugContext(ctx, "close stdin", "error", err)
		}
	}()

	if s.OnStart != nil {
		if err := s.OnStart(id, res.ImageDigest); err != nil {
			d.kill(ctx, id, logger)
			return res, fmt.Errorf("runner: on start: %w", err)
		}
	}

	exitCode, exited, abandoned := int64(-1), false, false
	select {
	case w := <-waitC:
		waited, exitCode, exited = true, w.StatusCode, true
		if w.Error != nil && w.Error.Message != "" {
			logger.WarnContext(ctx, "wait reported an error", "error", w.Error.Message)
		}
	case err := <-waitErrC:
		waited = true
		d.kill(ctx, id, logger)
		return res, d.runErr(ctx, "wait container", err)
	case <-timer.C:
		res.TimedOut = true
	case <-limitHit:
		res.OutputLimited = true
	case <-ctx.Done():
		abandoned = true
	}
	if !exited {
		d.kill(ctx, id, logger)
		select {
		case w := <-waitC:
			waited, exitCode, exited = true, w.StatusCode, true
		case err := <-waitErrC:
			waited = true
			logger.WarnContext(ctx, "wait for killed container", "error", err)
		case <-time.After(killWait):
			logger.WarnContext(ctx, "killed container did not report its exit", "after", killWait)
		}
	}
	res.CompletedAt = time.Now()
	res.Duration = res.CompletedAt.Sub(res.StartedAt)
	res.Timings.Wait = res.Duration

	// The attach stream ends once the engine has copied the last output.
	select {
	case <-copyDone:
	case <-time.After(drainTimeout):
		logger.WarnContext(ctx, "output stream still open after exit", "after", drainTimeout)
		hj.Close()
		<-copyDone
	}
	if _, truncated := stdout.bytes(); truncated {
		res.OutputLimited = true
	}
	if _, truncated := stderr.bytes(); truncated {
		res.OutputLimited = true
	}

	t = time.Now()
	inspectCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inspectTimeout)
	info, err := d.api.ContainerInspect(inspectCtx, id)
	cancel()
	res.Timings.Inspect = time.Since(t)
	switch {
	case err == nil && info.State != nil:
		res.ExitCode = info.State.ExitCode
		res.OOMKilled = info.State.OOMKilled
	case exited:
		logger.WarnContext(ctx, "inspect exited container", "error", err)
		res.ExitCode = int(exitCode)
	case !abandoned:
		return res, wrapEngineErr("inspect container", err)
	}
	if abandoned {
		return res, fmt.Errorf("runner: invocation abandoned: %w", ctx.Err())
	}
	logger.DebugContext(ctx, "invocation done", "exit_code", res.ExitCode, "error_type", res.ErrorType(),
		"duration", res.Duration)
	return res, nil
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
