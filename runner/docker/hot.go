package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/minilambda/minilambda/runner/engine"
)

var newline = []byte{'\n'}

// LabelHot marks a long-lived hot container.
const LabelHot = "minilambda.hot"

// hot is a long-lived function container speaking the line protocol: one
// JSON event per line on its stdin, one result line on its stdout, one
// event in flight at a time. stderr written while an event is in flight
// is that event's logs.
type hot struct {
	d      *Docker
	id     string
	digest string
	logger *slog.Logger
	hj     types.HijackedResponse
	limit  int64

	lines  chan []byte // result lines, or nil when a line passed the limit
	dead   chan struct{}
	stderr *capBuffer    // swapped for each event, under errMu
	wrote  chan struct{} // signalled after each stderr write

	mu     sync.Mutex // one event in flight
	errMu  sync.Mutex // guards stderr between the copier and Do
	broken bool
	// events and logged count this container's answered events and those
	// that came with logs, under mu.
	events, logged int
	closed         sync.Once
}

// ID returns the container's ID.
func (h *hot) ID() string { return h.id }

// ImageDigest returns the ID of the image the container runs.
func (h *hot) ImageDigest() string { return h.digest }

// Alive reports whether the container's output is still open.
func (h *hot) Alive() bool {
	select {
	case <-h.dead:
		return false
	default:
		return true
	}
}

// StartHot creates, attaches and starts a hot container for s.
func (d *Docker) StartHot(ctx context.Context, s engine.Spec) (engine.Hot, error) {
	s, err := s.Normalize()
	if err != nil {
		return nil, err
	}
	logger := d.logger.With("function_id", s.FunctionID, "function_name", s.FunctionName, "hot", true)
	imageID, err := d.ImageID(ctx, s.Image)
	if err != nil {
		return nil, err
	}
	config, hostConfig := containerConfig(s, imageID)
	config.StdinOnce = false
	config.Labels[LabelHot] = "true"
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := d.api.ContainerCreate(createCtx, config, hostConfig, nil, nil, containerName("hot-"+s.FunctionID))
	cancel()
	if err != nil {
		return nil, wrapEngineErr("create hot container", err)
	}
	h := &hot{
		d: d, id: created.ID, digest: imageID, logger: logger.With("container_id", created.ID),
		limit: s.OutputLimit, lines: make(chan []byte, 1), dead: make(chan struct{}),
		stderr: newCapBuffer(s.OutputLimit, nil), wrote: make(chan struct{}, 1),
	}
	fail := func(op string, err error) (engine.Hot, error) {
		h.Close(ctx)
		return nil, d.runErr(ctx, op, err)
	}
	if h.hj, err = d.api.ContainerAttach(ctx, h.id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true}); err != nil {
		return fail("attach hot container", err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, hotStderr{h}, h.hj.Reader)
		pw.CloseWithError(err)
	}()
	go h.readLines(pr)
	if err := d.api.ContainerStart(ctx, h.id, container.StartOptions{}); err != nil {
		return fail("start hot container", err)
	}
	return h, nil
}

// hotStderr routes the container's stderr to the buffer of the event in
// flight.
type hotStderr struct{ h *hot }

func (w hotStderr) Write(p []byte) (int, error) {
	w.h.errMu.Lock()
	defer w.h.errMu.Unlock()
	n, err := w.h.stderr.Write(p)
	// Signalled under the lock, so that a signal is always about the
	// buffer in place when it was sent.
	select {
	case w.h.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// readLines turns stdout into result lines until it ends or a line passes
// the limit.
func (h *hot) readLines(r io.Reader) {
	defer close(h.dead)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		var line []byte
		for {
			chunk, err := br.ReadSlice('\n')
			line = append(line, chunk...)
			if int64(len(line)) > h.limit {
				h.lines <- nil
				return
			}
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
		h.lines <- line
	}
}

// Do sends one event and waits up to timeout for its result line; see
// engine.Hot.
func (h *hot) Do(ctx context.Context, _ string, event []byte, timeout time.Duration, onStart engine.OnStart) (engine.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	res := engine.Result{ContainerID: h.id, ImageDigest: h.digest, StartedAt: time.Now()}
	if h.broken {
		return res, fmt.Errorf("%w: used after it broke", engine.ErrHotBroken)
	}
	if bytes.ContainsRune(event, '\n') {
		return res, fmt.Errorf("%w: an event for a hot container must be one line", engine.ErrInvalidSpec)
	}
	if !h.Alive() {
		h.broken = true
		return res, fmt.Errorf("%w: it exited while idle", engine.ErrHotStale)
	}
	if err := onStart(h.id, h.digest); err != nil {
		return res, err
	}
	res.StartedAt = time.Now()
	select {
	case <-h.lines:
		// A line nobody asked for: the function answers more than once per
		// event, and every later answer would go to the wrong event.
		h.broken = true
		return res, fmt.Errorf("%w: it wrote a result line with no event in flight", engine.ErrHotBroken)
	default:
	}
	h.errMu.Lock()
	h.stderr = newCapBuffer(h.limit, nil)
	select {
	case <-h.wrote: // about the last event's logs
	default:
	}
	h.errMu.Unlock()
	takeLogs := func() {
		h.errMu.Lock()
		res.Stderr, res.StderrTruncated = h.stderr.bytes()
		h.errMu.Unlock()
	}
	take := func() {
		takeLogs()
		res.CompletedAt = time.Now()
		res.Duration = res.CompletedAt.Sub(res.StartedAt)
	}
	// The event and its newline in one writev where the connection allows
	// it, without appending to the caller's slice (whose array may go on
	// past it).
	if _, err := (&net.Buffers{event, newline}).WriteTo(h.hj.Conn); err != nil {
		h.broken = true
		take()
		h.exitState(ctx, &res)
		return res, fmt.Errorf("%w: writing the event: %v", engine.ErrHotBroken, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-h.lines:
		take()
		if !ok || line == nil {
			h.broken = true
			res.OutputLimited = true
			res.StdoutTruncated = true
			return res, fmt.Errorf("%w: result line longer than %d bytes", engine.ErrHotBroken, h.limit)
		}
		// The function answered when its line came; the wait for its logs
		// is the platform's.
		h.settleStderr(ctx, len(res.Stderr) > 0)
		takeLogs()
		res.Stdout = line
		h.events++
		if len(res.Stderr) > 0 {
			h.logged++
		}
		return res, nil
	case <-h.dead:
		h.broken = true
		take()
		h.exitState(ctx, &res)
		return res, fmt.Errorf("%w: the container exited", engine.ErrHotBroken)
	case <-timer.C:
		h.broken = true
		take()
		res.TimedOut = true
		return res, fmt.Errorf("%w: no result line within %v", engine.ErrHotBroken, timeout)
	case <-ctx.Done():
		h.broken = true
		take()
		return res, fmt.Errorf("runner: hot invocation abandoned: %w", ctx.Err())
	}
}

// The engine copies stdout and stderr on separate paths, so logs a
// function wrote before its result line can reach the platform after it:
// under load, measured at more than 10 ms in about one event in a hundred,
// and past 50 ms with the race detector on and other tests starting
// containers. After the result line, stderr must stay quiet for
// stderrQuiet. A container that has sent logs with most of its events (or
// has answered none yet) and has sent none with this one is given up to
// stderrLate for them to arrive. The whole wait is bounded by stderrMax.
const (
	stderrQuiet = 500 * time.Microsecond
	stderrLate  = 200 * time.Millisecond
	stderrMax   = 250 * time.Millisecond
)

// settleStderr waits for the logs of the event whose result line came;
// some is whether logs had come with it. It returns early when ctx ends.
func (h *hot) settleStderr(ctx context.Context, some bool) {
	deadline := time.Now().Add(stderrMax)
	wait := stderrQuiet
	if !some && (h.events == 0 || h.logged*2 > h.events) {
		wait = stderrLate
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-h.wrote:
			left := time.Until(deadline)
			if left <= 0 {
				return
			}
			timer.Reset(min(stderrQuiet, left))
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// exitState fills in how an exited container ended.
func (h *hot) exitState(ctx context.Context, res *engine.Result) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inspectTimeout)
	defer cancel()
	waitC, errC := h.d.api.ContainerWait(ctx, h.id, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case <-errC:
	case <-time.After(killWait):
	}
	if info, err := h.d.api.ContainerInspect(ctx, h.id); err == nil && info.State != nil {
		res.ExitCode, res.OOMKilled = info.State.ExitCode, info.State.OOMKilled
	}
	if res.ExitCode == 0 {
		// It left without answering: that is the function's failure even
		// if it exited 0.
		res.ExitCode = -1
	}
}

// Close kills and removes the container; it is safe to call more than once.
func (h *hot) Close(ctx context.Context) {
	h.closed.Do(func() {
		h.d.kill(ctx, h.id, h.logger)
		if h.hj.Conn != nil {
			h.hj.Close()
		}
		h.d.remove(ctx, h.id, h.logger)
	})
}
