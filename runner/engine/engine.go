// Package engine is the seam between the runner and a container engine:
// the spec of a function's container, what a run did, the errors an engine
// reports and the [Driver] interface, which lists only the calls the runner
// makes. The runner depends on this package alone; runner/docker is the
// Docker Engine's driver, and another engine's would sit beside it.
//
// A driver creates, starts, stops and removes containers and reads their
// state; it never carries a function's data. Every function container is
// detached ([Driver.StartDetached]): the init it runs as its first process
// reaches the server through a socket mounted into it, and runner/agent
// gives the runner the containers of each mode on top of that:
//
//   - a cold container runs one invocation and is removed;
//   - a prestarted one is a cold container started ahead of its
//     invocation, waiting in its init for the event ([Prestarted]);
//   - a hot or lambda one lives across invocations and takes one event at
//     a time ([Hot]).
//
// A function that fails, times out, runs out of memory or floods its output
// is not an error of a driver: it is a [Result] that says so
// ([Result.ErrorType]). Errors mean the platform could not do its part.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/minilambda/minilambda/function"
)

// Errors a driver reports, wrapped with what it was doing. Their texts
// reach API clients inside error messages, and are kept as they were
// before engines had a package of their own.
var (
	// ErrEngineUnavailable means the engine could not be reached: its
	// socket is missing, refuses connections or stopped answering. It is
	// transient; the same call succeeds once the engine is back.
	ErrEngineUnavailable = errors.New("runner: docker engine unavailable")
	// ErrImageNotFound means the function's image is not in the engine.
	// Nothing is ever pulled: images are loaded or built on the host.
	ErrImageNotFound = errors.New("runner: image not found")
	// ErrBadImage means an archive given to LoadImage could not be loaded:
	// it is not a `docker save` tar, or the engine rejected its content.
	ErrBadImage = errors.New("runner: bad image archive")
	// ErrInvalidSpec means a Spec, or an event for a hot container, was
	// refused before anything was asked of the engine.
	ErrInvalidSpec = errors.New("runner: invalid spec")
	// ErrHotBroken means a hot container can take no more events: it
	// exited, hung, or broke the line protocol. Close it and start another.
	ErrHotBroken = errors.New("runner: hot container is broken")
	// ErrHotStale means a long-lived container had ended before it took
	// the event: nothing ran, and OnStart was not called. Close it and
	// give the event to another.
	ErrHotStale = errors.New("runner: the container ended before it took the event")
)

// DefaultOutputLimit is how many bytes of stdout, and of stderr, a run
// keeps unless the Spec says otherwise.
const DefaultOutputLimit = 1 << 20

// Spec describes a function's container.
type Spec struct {
	// FunctionID and InvocationID label the container; FunctionName only
	// appears in the driver's logs. Hot containers have no InvocationID.
	FunctionID   string
	FunctionName string
	InvocationID string
	// Image is a tag or an image ID. It is resolved to an ID once, and the
	// container is created from that ID.
	Image string
	Env   map[string]string
	// MemoryMB is the memory limit, swap excluded
	// (function.DefaultMemoryMB when zero).
	MemoryMB int
	// CPUs is a CPU quota, such as 0.5; zero means no quota.
	CPUs float64
	// ReservedCPUs is what a cluster keeps free for the container on the
	// node it places it on: the cpus its function asked for, not a quota
	// the server gives by default (a pooled container's), since a core
	// reserved for every warm container would fill a node with idle ones.
	// An engine of one machine reserves nothing.
	ReservedCPUs float64
	// Network is function.DefaultNetwork when empty, "none" or the name of a
	// user-defined network; function.CheckNetwork says which are refused.
	Network string
	// OutputLimit is how many bytes of stdout, and of stderr, are kept
	// (DefaultOutputLimit when zero). Past it the function is killed.
	OutputLimit int64
	// ReadOnly mounts the image's filesystem read-only, with a small
	// tmpfs on /tmp for scratch files.
	ReadOnly bool
	// Labels are added to the container's; they cannot replace the labels
	// the driver sets.
	Labels map[string]string
	// Mounts are host paths bind-mounted into the container, read-only.
	Mounts []Mount
	// Entrypoint, Cmd and WorkingDir replace the image's when set.
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	// Wrap, when set, runs in place of the image's entrypoint, with the
	// image's entrypoint and command after it as its arguments: an init
	// that sets the stage and then runs the image as it would have run.
	Wrap []string
	// Nodes, on a cluster, are the only nodes the container may be placed
	// on: those whose agents made its socket. Empty means any; an engine
	// of one machine ignores it.
	Nodes []string
	// WrapEnv is environment for Wrap alone, such as the container's
	// secret: it is not checked as the function's, and Wrap removes it
	// before it starts the image's command.
	WrapEnv map[string]string
}

// Mount is a host path bind-mounted read-only into a container.
type Mount struct {
	Source string // absolute, on the engine's host
	Target string // absolute, in the container
}

// Normalize checks s with the function's rules and fills in the defaults.
// Errors wrap ErrInvalidSpec.
func (s Spec) Normalize() (Spec, error) {
	bad := func(err error) (Spec, error) { return s, fmt.Errorf("%w: %v", ErrInvalidSpec, err) }
	if err := function.CheckImage(s.Image); err != nil {
		return bad(err)
	}
	switch {
	case s.MemoryMB == 0:
		s.MemoryMB = function.DefaultMemoryMB
	default:
		if err := function.CheckMemory(s.MemoryMB); err != nil {
			return bad(err)
		}
	}
	switch {
	case s.CPUs < 0 || s.CPUs != s.CPUs:
		return bad(fmt.Errorf("cpus %v", s.CPUs))
	case s.ReservedCPUs < 0 || s.ReservedCPUs != s.ReservedCPUs:
		return bad(fmt.Errorf("reserved cpus %v", s.ReservedCPUs))
	case s.OutputLimit < 0:
		return bad(errors.New("negative output limit"))
	case s.OutputLimit == 0:
		s.OutputLimit = DefaultOutputLimit
	}
	if s.Network == "" {
		s.Network = function.DefaultNetwork
	} else if err := function.CheckNetwork(s.Network); err != nil {
		return bad(err)
	}
	if err := function.CheckEnv(s.Env); err != nil {
		return bad(err)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target || m.Target == "/" {
			return bad(fmt.Errorf("mount %q on %q: both must be absolute, and the target clean and not /", m.Source, m.Target))
		}
	}
	if len(s.Wrap) > 0 && !path.IsAbs(s.Wrap[0]) {
		return bad(fmt.Errorf("wrap %q: not an absolute path", s.Wrap[0]))
	}
	return s, nil
}

// Timeout checks the timeout of one run and fills in the default.
func Timeout(d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%w: negative timeout", ErrInvalidSpec)
	case d == 0:
		return function.DefaultTimeout * time.Second, nil
	}
	return d, nil
}

// Result is what one invocation did. A function that failed, timed out,
// ran out of memory or flooded its output still has a Result;
// [Result.ErrorType] says which.
type Result struct {
	ContainerID string
	// ImageDigest is the ID ("sha256:...") of the image that ran: tags
	// move, the ID is what actually ran.
	ImageDigest string

	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool

	ExitCode int
	// OOMKilled is the engine's word that the kernel's OOM killer struck.
	OOMKilled bool
	// TimedOut means the container was killed at the run's timeout.
	TimedOut bool
	// OutputLimited means stdout or stderr passed Spec.OutputLimit, and the
	// container was killed.
	OutputLimited bool

	// FunctionError is set when a Lambda runtime failed the invocation:
	// the errorType and errorMessage it reported, or the platform's, in
	// Lambda's words, for a runtime that exited or answered too much. A
	// Lambda container's Stdout is its response payload (or the error it
	// posted), and its Stderr is everything it wrote to stdout and stderr
	// while it had the event.
	FunctionError *FunctionError
	// InitDuration is how long a new long-lived container took to be ready
	// for its first event, on the invocation that waited for it.
	InitDuration time.Duration

	// StartedAt is when the function had its event, CompletedAt when its
	// exit (or, hot, its result line) was seen, and Duration the time
	// between them.
	StartedAt, CompletedAt time.Time
	Duration               time.Duration

	Timings Timings
}

// FunctionError is an invocation's failure as the Lambda Runtime API
// reports it.
type FunctionError struct {
	Type    string // errorType, such as "Runtime.ExitError"
	Message string // errorMessage
}

// Timings breaks the wall time of a cold run down by step. The removal of
// its container is no part of it: it comes after the answer.
type Timings struct {
	Create  time.Duration // creating and starting the container
	Start   time.Duration // from then until its init connected
	Wait    time.Duration // from the event to the exit (Result.Duration)
	Inspect time.Duration // reading its exit state from the engine, when the init could not say
	Total   time.Duration // the whole run
}

// ErrorType classifies a failed invocation; it is empty for a success
// (exit code 0 within the limits). An OOM kill counts only when the
// function also exited non-zero.
func (r Result) ErrorType() function.ErrorType {
	switch {
	case r.TimedOut:
		return function.ErrorTimeout
	case r.OutputLimited:
		return function.ErrorOutputLimit
	case r.OOMKilled && r.ExitCode != 0:
		return function.ErrorOutOfMemory
	case r.ExitCode != 0, r.FunctionError != nil:
		return function.ErrorFunction
	}
	return ""
}

// OnStart is called once a container runs with its event, with its ID and
// the ID of its image: where the runner records the invocation's start.
// If it returns an error the container is killed and removed, and the run
// returns that error, wrapped.
type OnStart func(containerID, imageDigest string) error

// Driver is what the runner needs of a container engine. Its methods are
// safe for concurrent use.
type Driver interface {
	// Ping checks that the engine answers.
	Ping(ctx context.Context) error
	// StartDetached starts a container with no stream attached: its
	// output goes nowhere, and it takes its work through s.Mounts, from
	// the init s.Wrap names.
	StartDetached(ctx context.Context, s Spec) (Detached, error)
	// LoadImage loads a `docker save` archive and returns the tags it
	// loaded (or the IDs of untagged images).
	LoadImage(ctx context.Context, r io.Reader) ([]string, error)
	// BuildImage builds an image from a build context (a tar with a
	// Dockerfile at its root) whose base images are in the engine already,
	// tags it and returns its ID. A build that fails is an error wrapping
	// ErrBadImage that says why.
	BuildImage(ctx context.Context, buildContext io.Reader, tag string, labels map[string]string) (string, error)
	// ImageID returns the ID (sha256 digest) of the image ref names now;
	// an error wrapping ErrImageNotFound when there is none.
	ImageID(ctx context.Context, ref string) (string, error)
	// Images maps each image tag in the engine to its image's ID.
	Images(ctx context.Context) (map[string]string, error)
	// RemoveManaged removes every container the driver created that carries
	// all the labels in selector (an empty value matches any), in any
	// state, and says how many it removed.
	RemoveManaged(ctx context.Context, selector map[string]string) (int, error)
}

// Prestarted is a fresh container started ahead of its one invocation.
type Prestarted interface {
	// Run delivers input and waits as Driver.Run does; the timeout counts
	// from the delivery. It removes the container whatever happens, and
	// fails when called a second time.
	Run(ctx context.Context, input []byte, timeout time.Duration, onStart OnStart) (Result, error)
	// Discard removes the container unused.
	Discard(ctx context.Context)
}

type traceKey struct{}

// WithTraceID gives an invocation's context its trace id, which an engine
// may pass to the function (the Lambda Runtime API's
// Lambda-Runtime-Trace-Id).
func WithTraceID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceID is the trace id WithTraceID gave ctx, or "".
func TraceID(ctx context.Context) string {
	id, _ := ctx.Value(traceKey{}).(string)
	return id
}

// Reason says why d ended without running, when its engine knows: a
// cluster that could not place it, say. It is empty when the engine does
// not say, or the container ran.
func Reason(d Detached) string {
	if r, ok := d.(interface{ Reason() string }); ok {
		return r.Reason()
	}
	return ""
}

// Hot is a long-lived container that takes one event at a time: a hot
// function's line protocol (one JSON event per line on its stdin, one
// result line on its stdout, the stderr written before that line its
// logs), or a lambda function's Runtime API.
type Hot interface {
	ID() string
	// Alive reports whether the container may take an event: false once
	// it is known to have exited.
	Alive() bool
	// ImageDigest is the ID of the image the container runs.
	ImageDigest() string
	// Do sends one event of invocation invocationID, a line without its
	// newline, calling onStart just before the container has it, and waits
	// up to timeout for the answer. An error wrapping ErrHotBroken means
	// the container exited (the Result says how, when it could tell), hung
	// past timeout (TimedOut) or wrote a line over the output limit
	// (OutputLimited): the caller closes it. ErrHotStale means nothing
	// ran. An error of onStart is returned as it is, and nothing runs.
	Do(ctx context.Context, invocationID string, line []byte, timeout time.Duration, onStart OnStart) (Result, error)
	// Close kills and removes the container; it is safe to call more than
	// once.
	Close(ctx context.Context)
}

// Detached is a long-lived container that the driver starts and stops but
// does not talk to.
type Detached interface {
	ID() string
	// ImageDigest is the ID of the image the container runs.
	ImageDigest() string
	// Exited is closed once the container has stopped running.
	Exited() <-chan struct{}
	// ExitState says how the container ended, once Exited is closed: its
	// exit code, and whether the kernel's OOM killer struck in it.
	ExitState(ctx context.Context) (code int, oomKilled bool)
	// Close kills and removes the container; it is safe to call more than
	// once.
	Close(ctx context.Context)
}
