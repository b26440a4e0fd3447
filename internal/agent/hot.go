package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/oklog/ulid/v2"
)

// Hot mode keeps long-lived containers per function, each taking one
// event at a time over the line protocol. A function's pool grows to its
// concurrency, shrinks when containers idle past Options.HotIdleTTL, and is
// retired when the function is updated or deleted: idle containers stop at
// once, busy ones when their event is answered. Every invocation is still
// queued, started and ended in the log before it is answered.

// Hot container events.
const (
	TypeHotStarted = "hot.started"
	TypeHotStopped = "hot.stopped"
)

// HotStarted is the payload of hot.started.
type HotStarted struct {
	V               int    `json:"v"`
	ContainerID     string `json:"container_id"`
	ImageDigest     string `json:"image_digest"`
	FunctionVersion int    `json:"function_version"`
}

// HotStopped is the payload of hot.stopped.
type HotStopped struct {
	V           int    `json:"v"`
	ContainerID string `json:"container_id"`
	Reason      string `json:"reason"`
}

// DefaultHotConcurrency is the pool bound of a hot function that sets no
// concurrency of its own.
const DefaultHotConcurrency = 4

// DefaultHotIdleTTL is how long an idle hot container is kept.
const DefaultHotIdleTTL = 5 * time.Minute

type pool struct {
	version int
	idle    []idleHot
	total   int // idle and busy
	retired bool
}

type idleHot struct {
	h     *runner.Hot
	since time.Time
}

func (a *Agent) hotSpec(f projections.Function) runner.Spec {
	return runner.Spec{
		FunctionID: f.ID, FunctionName: f.Name, Image: f.Image, Env: f.Env,
		MemoryMB: int64(f.MemoryMB), CPUs: f.CPUs, Network: f.Network, ReadOnly: f.ReadOnly,
		OutputLimit: a.opts.OutputLimit,
		Labels:      map[string]string{LabelInstance: a.opts.Instance},
	}
}

// getHot returns an idle container of f's pool, or starts one.
func (a *Agent) getHot(ctx context.Context, f projections.Function) (*runner.Hot, *pool, bool, error) {
	a.hmu.Lock()
	p := a.pools[f.ID]
	if p == nil || p.version != f.Version {
		if p != nil {
			a.retireLocked(f.ID, p, "the function was updated")
		}
		p = &pool{version: f.Version}
		a.pools[f.ID] = p
	}
	if n := len(p.idle); n > 0 {
		h := p.idle[n-1].h
		p.idle = p.idle[:n-1]
		a.hmu.Unlock()
		return h, p, true, nil
	}
	p.total++
	a.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
	a.hmu.Unlock()
	h, err := a.run.StartHot(ctx, a.hotSpec(f))
	if err != nil {
		a.hmu.Lock()
		p.total--
		a.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
		a.hmu.Unlock()
		return nil, nil, false, err
	}
	e, err := projections.NewEvent(TypeHotStarted, f.ID, "", HotStarted{V: 1, ContainerID: h.ID(), ImageDigest: h.ImageDigest(), FunctionVersion: f.Version})
	if err == nil {
		_, err = a.log.Append(context.WithoutCancel(ctx), e)
	}
	if err != nil {
		a.putHot(f, p, h, "cannot record its start")
		return nil, nil, false, err
	}
	return h, p, false, nil
}

// putHot gives a container back to its pool, or stops it when broken is
// not empty (the reason) or the pool was retired.
func (a *Agent) putHot(f projections.Function, p *pool, h *runner.Hot, broken string) {
	a.hmu.Lock()
	if broken == "" && !p.retired && !a.hotStopped {
		p.idle = append(p.idle, idleHot{h: h, since: time.Now()})
		a.hmu.Unlock()
		return
	}
	p.total--
	a.metrics.HotContainers.WithLabelValues(f.Name).Set(float64(p.total))
	if broken == "" {
		broken = "its pool was retired"
	}
	a.stopHotLocked(f.ID, h, broken)
	a.hmu.Unlock()
}

// stopHotLocked stops a container in the background and records why.
func (a *Agent) stopHotLocked(fnID string, h *runner.Hot, reason string) {
	a.hotwg.Add(1)
	go func() {
		defer a.hotwg.Done()
		h.Close(context.Background())
		e, err := projections.NewEvent(TypeHotStopped, fnID, "", HotStopped{V: 1, ContainerID: h.ID(), Reason: reason})
		if err == nil {
			_, err = a.log.Append(context.Background(), e)
		}
		if err != nil {
			a.logger.Warn("cannot record a hot container's stop", "container_id", h.ID(), "err", err)
		}
	}()
}

// retireLocked stops a pool's idle containers; busy ones stop when they
// come back.
func (a *Agent) retireLocked(fnID string, p *pool, reason string) {
	p.retired = true
	for _, ih := range p.idle {
		a.stopHotLocked(fnID, ih.h, reason)
	}
	p.total -= len(p.idle)
	p.idle = nil
	if a.pools[fnID] == p {
		delete(a.pools, fnID)
	}
}

// retirePool drains a function's pool and drops its spare after an update
// or a delete.
func (a *Agent) retirePool(fnID, reason string) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	a.dropSpareLocked(fnID)
	if p := a.pools[fnID]; p != nil {
		a.retireLocked(fnID, p, reason)
	}
}

// reapHot stops hot containers and spares idle longer than the TTL.
func (a *Agent) reapHot(now time.Time) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	for fnID, sp := range a.spares {
		if now.Sub(sp.since) > a.opts.HotIdleTTL {
			a.dropSpareLocked(fnID)
		}
	}
	for fnID, p := range a.pools {
		keep := p.idle[:0]
		for _, ih := range p.idle {
			if now.Sub(ih.since) > a.opts.HotIdleTTL {
				a.stopHotLocked(fnID, ih.h, "idle")
				p.total--
			} else {
				keep = append(keep, ih)
			}
		}
		p.idle = keep
		if p.total == 0 {
			delete(a.pools, fnID)
		}
	}
}

// stopAllHot stops every idle container and makes busy ones stop when they
// come back, then waits for the stops to be recorded.
func (a *Agent) stopAllHot() {
	a.hmu.Lock()
	a.hotStopped = true
	for fnID := range a.spares {
		a.dropSpareLocked(fnID)
	}
	for fnID, p := range a.pools {
		a.retireLocked(fnID, p, "the server is stopping")
	}
	a.hmu.Unlock()
}

// attemptHot runs one attempt in a hot container of f, for an invocation
// already queued (async), and returns its started event when it got that
// far.
func (a *Agent) attemptHot(ctx context.Context, f projections.Function, id string, input json.RawMessage, timeout, n int) (runner.Result, []eventlog.Event, error) {
	line, err := compactEvent(input)
	if err != nil {
		return runner.Result{}, nil, err
	}
	h, p, warm, err := a.getHot(ctx, f)
	if err != nil {
		return runner.Result{}, nil, err
	}
	e, err := startedEvent(f, id, n, h.ID(), h.ImageDigest())
	var started []eventlog.Event
	if err == nil {
		started, err = a.log.Append(context.WithoutCancel(ctx), e)
	}
	if err != nil {
		a.putHot(f, p, h, "")
		return runner.Result{}, nil, err
	}
	res, err := a.doHot(ctx, f, p, h, warm, line, timeout)
	return res, started, err
}

// invokeHot is Invoke for a hot function. With a container in hand first,
// the queued and started events go in one append: two fsynced commits per
// invocation instead of three, each before the step it records. It returns
// the events it appended, none when it could not queue the invocation.
// req has passed checkRequest.
func (a *Agent) invokeHot(ctx context.Context, f projections.Function, req InvokeRequest) ([]eventlog.Event, runner.Result, error) {
	line, err := compactEvent(req.Event)
	if err != nil {
		return nil, runner.Result{}, err
	}
	id := ulid.Make().String()
	h, p, warm, err := a.getHot(ctx, f)
	if err != nil {
		// Record the invocation and how it could not run, as a cold one.
		events, qerr := a.appendQueued(ctx, f, id, req, false)
		if qerr != nil {
			return nil, runner.Result{}, qerr
		}
		return events, runner.Result{}, err
	}
	s, err := startedEvent(f, id, 1, h.ID(), h.ImageDigest())
	var events []eventlog.Event
	if err == nil {
		events, err = a.appendQueued(ctx, f, id, req, false, s)
	}
	if err != nil {
		a.putHot(f, p, h, "")
		return nil, runner.Result{}, err
	}
	timeout := req.Timeout
	if timeout == 0 {
		timeout = f.Timeout
	}
	a.metrics.InFlight.Inc()
	defer a.metrics.InFlight.Dec()
	res, err := a.doHot(ctx, f, p, h, warm, line, timeout)
	return events, res, err
}

func compactEvent(input json.RawMessage) ([]byte, error) {
	var line bytes.Buffer
	if err := json.Compact(&line, input); err != nil {
		return nil, fmt.Errorf("%w: the event is not JSON: %v", ErrInvalid, err)
	}
	return line.Bytes(), nil
}

// startedEvent is the invocation.started event of attempt n of invocation
// id, in the container given.
func startedEvent(f projections.Function, id string, n int, containerID, imageDigest string) (eventlog.Event, error) {
	return projections.NewEvent(projections.TypeInvocationStarted, f.ID, id, projections.InvocationStarted{
		V: 1, Attempt: n, ContainerID: containerID, ImageDigest: imageDigest,
	})
}

// doHot sends the event and gives the container back, or replaces it when
// it broke; a broken container is the function's failure, which the Result
// describes.
func (a *Agent) doHot(ctx context.Context, f projections.Function, p *pool, h *runner.Hot, warm bool, line []byte, timeout int) (runner.Result, error) {
	kind := "cold"
	if warm {
		kind = "warm"
	}
	a.metrics.Starts.WithLabelValues(kind).Inc()
	_, res, err := h.Do(ctx, line, time.Duration(timeout)*time.Second)
	switch {
	case err == nil:
		a.putHot(f, p, h, "")
		return res, nil
	case errors.Is(err, runner.ErrHotBroken):
		a.putHot(f, p, h, err.Error())
		return res, nil
	default:
		a.putHot(f, p, h, err.Error())
		return res, err
	}
}

// A cold function that was used recently keeps one spare: a fresh
// container already created, attached and started, blocked on its stdin,
// for exactly one next invocation. It takes the engine's create and start
// (most of a cold invocation) off that invocation's path; the function's
// process starts before its event arrives, as in Lambda's init phase.

type spare struct {
	version, timeout int
	p                *runner.Prepared
	since            time.Time
}

// takeSpare returns f's spare when it fits (same version and timeout).
func (a *Agent) takeSpare(f projections.Function, timeout int) *runner.Prepared {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	sp := a.spares[f.ID]
	if sp == nil || sp.version != f.Version || sp.timeout != timeout {
		return nil
	}
	delete(a.spares, f.ID)
	return sp.p
}

// prestart prepares a spare for f in the background, unless it has one or
// one is on its way.
func (a *Agent) prestart(f projections.Function) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if a.hotStopped || a.preparing[f.ID] {
		return
	}
	if sp := a.spares[f.ID]; sp != nil && sp.version == f.Version {
		return
	}
	a.preparing[f.ID] = true
	a.hotwg.Add(1)
	go func() {
		defer a.hotwg.Done()
		p, err := a.run.Prestart(context.Background(), a.coldSpec(f, f.Timeout))
		a.hmu.Lock()
		defer a.hmu.Unlock()
		delete(a.preparing, f.ID)
		if err != nil {
			a.logger.Debug("cannot prestart a container", "function", f.Name, "err", err)
			return
		}
		if a.hotStopped {
			a.discardLocked(p)
			return
		}
		if old := a.spares[f.ID]; old != nil {
			a.discardLocked(old.p)
		}
		a.spares[f.ID] = &spare{version: f.Version, timeout: f.Timeout, p: p, since: time.Now()}
	}()
}

func (a *Agent) discardLocked(p *runner.Prepared) {
	a.hotwg.Add(1)
	go func() {
		defer a.hotwg.Done()
		p.Discard(context.Background())
	}()
}

// dropSpareLocked discards f's spare, after an update or a delete.
func (a *Agent) dropSpareLocked(fnID string) {
	if sp := a.spares[fnID]; sp != nil {
		delete(a.spares, fnID)
		a.discardLocked(sp.p)
	}
}
