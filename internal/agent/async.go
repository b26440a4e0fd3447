package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/oklog/ulid/v2"
)

// The async queue is the log: an invocation.queued event with "async" is
// durable before the client hears 202, and a restart finds every PENDING
// async invocation in the views again. In memory the agent keeps only a
// list of ids in order of arrival, with when each may next run.

// Defaults of the async settings in Options.
const (
	DefaultWorkers     = 4
	DefaultMaxQueue    = 100000
	DefaultMaxAttempts = 3 // as Lambda's two retries
	DefaultMaxEventAge = 6 * time.Hour
	DefaultRetryBase   = 2 * time.Second
	DefaultRetryMax    = 5 * time.Minute
	MaxMaxAttempts     = 10
)

// TypeCallback records a callback delivery.
const TypeCallback = "invocation.callback"

// Callback is the payload of invocation.callback.
type Callback struct {
	V          int    `json:"v"`
	URL        string `json:"url"`
	Attempts   int    `json:"attempts"`
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
}

type item struct {
	id, fnID  string
	created   time.Time
	notBefore time.Time
	attempt   int // the attempt to run next, from 1
}

func (a *Agent) wakeWorkers() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// push adds an item in arrival order (ULIDs sort by time).
func (a *Agent) push(it *item) {
	a.qmu.Lock()
	i, _ := slices.BinarySearchFunc(a.queue, it.id, func(q *item, id string) int { return strings.Compare(q.id, id) })
	a.queue = slices.Insert(a.queue, i, it)
	a.metrics.QueueDepth.Set(float64(len(a.queue)))
	a.qmu.Unlock()
	// Every worker may be asleep; one wake is enough, since a worker that
	// takes an item wakes the next.
	a.wakeWorkers()
}

// Enqueue queues an async invocation of ref and returns its PENDING
// record once the queued event is durable.
func (a *Agent) Enqueue(ctx context.Context, ref string, req InvokeRequest) (projections.Invocation, error) {
	var inv projections.Invocation
	f, err := a.views.Function(ref)
	if err != nil {
		return inv, err
	}
	if req.CallbackURL == "" {
		req.CallbackURL = f.CallbackURL
	}
	if err := a.checkCallback(req.CallbackURL); err != nil {
		return inv, err
	}
	if req, err = checkRequest(req); err != nil {
		return inv, err
	}
	a.qmu.Lock()
	depth := len(a.queue)
	a.qmu.Unlock()
	if depth >= a.opts.MaxQueue {
		return inv, fmt.Errorf("%w: %d async invocations are queued, the server's limit", ErrBusy, depth)
	}
	id := ulid.Make().String()
	events, err := a.appendQueued(ctx, f, id, req, true)
	if err != nil {
		return inv, err
	}
	a.push(&item{id: id, fnID: f.ID, created: events[0].Time, attempt: 1})
	return projections.Record(events...)
}

// checkCallback accepts an empty URL, or an http(s) URL whose host the
// operator allowed.
func (a *Agent) checkCallback(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: callback_url %q must be an http or https URL", ErrInvalid, raw)
	}
	if len(a.opts.CallbackHosts) == 0 {
		return fmt.Errorf("%w: callbacks are off; the operator allows hosts with --callback-hosts", ErrInvalid)
	}
	host := strings.ToLower(u.Host)
	for _, h := range a.opts.CallbackHosts {
		h = strings.ToLower(h)
		if h == host || h == u.Hostname() && u.Port() == "" {
			return nil
		}
		if hh, _, err := net.SplitHostPort(host); err == nil && hh == h {
			return nil
		}
	}
	return fmt.Errorf("%w: callback host %q is not among the allowed --callback-hosts", ErrInvalid, u.Host)
}

// Start launches the async workers and the reaper of idle hot containers;
// they stop at Stop.
func (a *Agent) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.stopWorkers = cancel
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		tick := time.NewTicker(min(a.opts.HotIdleTTL/2, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				a.reapHot(now)
			}
		}
	}()
	for range a.opts.Workers {
		a.workers.Add(1)
		go func() {
			defer a.workers.Done()
			a.work(ctx)
		}()
	}
}

// Stop stops taking queued work, lets attempts under way finish until ctx
// ends, then kills what still runs; those attempts are recorded as failed
// and retried at the next start. It returns once everything is recorded.
func (a *Agent) Stop(ctx context.Context) {
	if a.stopWorkers != nil {
		a.stopWorkers()
	}
	done := make(chan struct{})
	go func() {
		a.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.cancelAttempts()
		<-done
	}
	a.callbacks.Wait()
}

// Wait returns once no invocation is under way and every hot or
// prestarted container has stopped. Last, it removes whatever container of
// this server is still there: one whose removal failed while the engine
// was unreachable would otherwise wait for the next start.
func (a *Agent) Wait() {
	a.wg.Wait()
	a.stopAllHot()
	a.hotwg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := a.run.RemoveManaged(ctx, map[string]string{LabelInstance: a.opts.Instance}); err != nil {
		a.logger.Warn("cannot remove leftover containers", "err", err)
	} else if n > 0 {
		a.logger.Info("removed leftover containers", "count", n)
	}
}

func (a *Agent) work(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		it, f, wait := a.next()
		if it != nil {
			a.wakeWorkers() // there may be more for another worker
			a.runAsync(it, f)
			a.release(f)
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-timer.C:
		}
	}
}

// next takes the oldest queued item that may run now and whose function
// has room, and reserves that room. Otherwise it says how long to wait.
func (a *Agent) next() (*item, projections.Function, time.Duration) {
	now := time.Now()
	wait := time.Minute
	fns := map[string]*projections.Function{}
	a.qmu.Lock()
	defer a.qmu.Unlock()
	for i, it := range a.queue {
		if d := it.notBefore.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		f, ok := fns[it.fnID]
		if !ok {
			fn, err := a.views.Function(it.fnID)
			if err != nil {
				// Deleted since: the worker that takes it records why it
				// cannot run.
				fn = projections.Function{ID: it.fnID, Deleted: true}
			}
			f = &fn
			fns[it.fnID] = f
		}
		a.mu.Lock()
		ok = f.Deleted || a.tryAcquireLocked(*f)
		if f.Deleted {
			a.inFlight++
			a.running[f.ID]++
		}
		a.mu.Unlock()
		if !ok {
			continue
		}
		a.queue = slices.Delete(a.queue, i, i+1)
		a.metrics.QueueDepth.Set(float64(len(a.queue)))
		return it, *f, 0
	}
	return nil, projections.Function{}, wait
}

func (a *Agent) maxAttempts(f projections.Function) int {
	if f.MaxAttempts > 0 {
		return f.MaxAttempts
	}
	return a.opts.MaxAttempts
}

// runAsync runs one attempt of a queued invocation and records what comes
// of it: the end, or a retry.
func (a *Agent) runAsync(it *item, f projections.Function) {
	ctx := context.Background()
	final := func(typ string, ended projections.InvocationEnded, res runner.Result, runErr error) {
		if _, err := a.end(ctx, f, it.id, typ, ended, res, runErr); err != nil {
			a.logger.Error("cannot record the end of an async invocation", "invocation_id", it.id, "err", err)
			return
		}
		a.callback(it.id)
	}
	platform := func(msg string) {
		final(projections.TypeInvocationFailed, projections.InvocationEnded{
			V: 1, Attempt: it.attempt - 1, Error: msg, ErrorType: projections.ErrorPlatform,
		}, runner.Result{}, errors.New(msg))
	}
	if f.Deleted {
		platform("the function was deleted before the invocation could run")
		return
	}
	if age := time.Since(it.created); age > a.opts.MaxEventAge {
		platform(fmt.Sprintf("dropped: the event is older than the maximum event age of %v", a.opts.MaxEventAge))
		return
	}
	q, err := a.views.Queued(it.id)
	if err != nil {
		platform(fmt.Sprintf("cannot read the queued event: %v", err))
		return
	}
	res, _, runErr := a.attempt(a.attemptCtx, f, it.id, q.Event, q.Timeout, it.attempt)
	typ, ended := outcome(res, runErr, f, q.Timeout, it.attempt)
	if errors.Is(runErr, context.Canceled) {
		ended.Error = "interrupted by server shutdown; the container was killed"
	}
	if typ == projections.TypeInvocationCompleted {
		final(typ, ended, res, runErr)
		return
	}
	backoff := min(a.opts.RetryBase<<(it.attempt-1), a.opts.RetryMax)
	notBefore := time.Now().Add(backoff)
	switch {
	case it.attempt >= a.maxAttempts(f):
		ended.Error = fmt.Sprintf("%s (attempt %d of %d, no retries left)", ended.Error, it.attempt, a.maxAttempts(f))
		final(typ, ended, res, runErr)
	case notBefore.Sub(it.created) > a.opts.MaxEventAge:
		ended.Error = fmt.Sprintf("%s (a retry would pass the maximum event age of %v)", ended.Error, a.opts.MaxEventAge)
		final(typ, ended, res, runErr)
	default:
		e, err := projections.NewEvent(projections.TypeInvocationRetried, f.ID, it.id, projections.InvocationRetried{
			V: 1, Attempt: it.attempt, Reason: ended.Error, NotBefore: notBefore.UTC(),
			ErrorType: ended.ErrorType, ExitCode: ended.ExitCode, DurationMS: ended.DurationMS,
			Result: ended.Result, Logs: ended.Logs,
		})
		if err == nil {
			_, err = a.log.Append(ctx, e)
		}
		if err != nil {
			a.logger.Error("cannot record a retry", "invocation_id", it.id, "err", err)
			return
		}
		a.metrics.Retries.Inc()
		a.push(&item{id: it.id, fnID: f.ID, created: it.created, notBefore: notBefore, attempt: it.attempt + 1})
	}
}

// callback POSTs the ended record to the invocation's callback URL, if it
// has one, with retries, and records how that went.
func (a *Agent) callback(id string) {
	q, err := a.views.Queued(id)
	if err != nil || q.CallbackURL == "" {
		return
	}
	a.callbacks.Add(1)
	go func() {
		defer a.callbacks.Done()
		inv, err := a.views.Invocation(id)
		if err != nil {
			return
		}
		body, _ := json.Marshal(inv)
		rec := Callback{V: 1, URL: q.CallbackURL}
		for try := 1; try <= a.opts.CallbackTries; try++ {
			rec.Attempts = try
			rec.StatusCode, rec.Error = a.post(q.CallbackURL, id, body)
			if rec.Error == "" {
				break
			}
			if try < a.opts.CallbackTries {
				time.Sleep(a.opts.RetryBase << (try - 1))
			}
		}
		e, err := projections.NewEvent(TypeCallback, inv.FunctionID, id, rec)
		if err == nil {
			_, err = a.log.Append(context.Background(), e)
		}
		if err != nil {
			a.logger.Warn("cannot record a callback", "invocation_id", id, "err", err)
		}
	}()
}

func (a *Agent) post(url, id string, body []byte) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Minilambda-Invocation-Id", id)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Sprintf("the callback answered %s", resp.Status)
	}
	return resp.StatusCode, ""
}
