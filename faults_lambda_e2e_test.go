package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/docker"
)

// Faults of lambda functions (issue 20), on the real binary and engine: a
// runtime that reports an init error and lives on, one that never asks for
// an event, and one that floods its Runtime API socket.

// lfRuntime is a Lambda custom runtime, standard library only, that talks
// to the Runtime API on a fresh connection per request, as a runtime built
// on curl does. LF_FAULT picks how it misbehaves: "init-error" reports an
// init error and then sleeps for good; "no-next" writes a start-up line and
// sleeps for good without asking for an event. Otherwise it answers every
// event {"name"} with a greeting, after dialling its Runtime API socket
// "flood" times, when the event says so, and holding every connection for
// "hold_ms".
const lfRuntime = `package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

var (
	api    = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/"
	client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
)

// post sends body to path, trying again on a connection that failed.
func post(path string, body []byte) {
	for try := 0; try < 10; try++ {
		resp, err := client.Post(api+path, "application/json", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		fmt.Fprintln(os.Stderr, "rt: post:", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// flood dials the socket n times, at most for 10 s, and holds what it got.
func flood(n int, hold time.Duration) (dialled, failed int) {
	var conns []net.Conn
	end := time.Now().Add(10 * time.Second)
	for i := 0; i < n && time.Now().Before(end); i++ {
		c, err := net.DialTimeout("unix", "/run/minilambda/api/rapi.sock", 200*time.Millisecond)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, c)
	}
	time.Sleep(hold)
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	return len(conns), failed
}

func main() {
	switch os.Getenv("LF_FAULT") {
	case "init-error":
		fmt.Fprintln(os.Stderr, "rt: loading the handler")
		post("init/error", []byte("{\"errorMessage\":\"cannot load the handler\",\"errorType\":\"Runtime.ImportModuleError\"}"))
		sleepForever()
	case "no-next":
		fmt.Fprintln(os.Stderr, "rt: warming caches")
		sleepForever()
	}
	for {
		resp, err := client.Get(api + "invocation/next")
		if err != nil {
			fmt.Fprintln(os.Stderr, "rt: next:", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var ev struct {
			Name   string ` + "`json:\"name\"`" + `
			Flood  int    ` + "`json:\"flood\"`" + `
			HoldMS int    ` + "`json:\"hold_ms\"`" + `
		}
		json.Unmarshal(body, &ev)
		answer := map[string]any{"message": "Hello, " + ev.Name + "!"}
		if ev.Flood > 0 {
			answer["dialled"], answer["failed"] = flood(ev.Flood, time.Duration(ev.HoldMS)*time.Millisecond)
		}
		out, _ := json.Marshal(answer)
		post("invocation/"+id+"/response", out)
	}
}
`

// lfImage builds lfRuntime into a FROM scratch image.
func lfImage(t *testing.T, cli *client.Client) dockertest.Image {
	t.Helper()
	return dockertest.BuildGoSource(t, cli, lfRuntime, "minilambda-e2e-lambda-faults")
}

// lfRemoveContainersAtCleanup removes, when the test ends, whatever
// container the server at db left, even when the test failed before it
// could check. Call it before starting the server, so that it runs after
// the server is killed.
func lfRemoveContainersAtCleanup(t *testing.T, cli *client.Client, db string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", runner.LabelInstance+"="+instanceID(db)))})
		for _, c := range list {
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
}

// lfRegister registers a function on s and returns its id.
func lfRegister(t *testing.T, s *server, spec map[string]any) string {
	t.Helper()
	var fn projections.Function
	if code := s.call("POST", "/functions", spec, &fn); code != 201 {
		t.Fatalf("register %v: %d", spec, code)
	}
	return fn.ID
}

// lfCall is one answer of the API, or why there was none.
type lfCall struct {
	code    int
	inv     projections.Invocation
	err     error
	elapsed time.Duration
}

// lfInvoke sends body to path and waits at most within for the answer:
// a call that hangs is an error, not a hung test.
func lfInvoke(s *server, path string, body any, within time.Duration) lfCall {
	b, _ := json.Marshal(body)
	client := &http.Client{Timeout: within}
	begin := time.Now()
	resp, err := client.Post("http://"+s.addr+path, "application/json", bytes.NewReader(b))
	c := lfCall{err: err}
	if err == nil {
		c.code = resp.StatusCode
		c.err = json.NewDecoder(resp.Body).Decode(&c.inv)
		resp.Body.Close()
	}
	c.elapsed = time.Since(begin)
	return c
}

// lfAwait polls invocation id until it has ended or within has passed,
// and returns its last record.
func lfAwait(s *server, id string, within time.Duration) projections.Invocation {
	deadline := time.Now().Add(within)
	for {
		var inv projections.Invocation
		s.call("GET", "/invocations/"+id, nil, &inv)
		if inv.Status == projections.StatusCompleted || inv.Status == projections.StatusFailed || time.Now().After(deadline) {
			return inv
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lfEnqueue queues an async invocation of fn and returns its id.
func lfEnqueue(t *testing.T, s *server, fn string, event any) string {
	t.Helper()
	var acc projections.Invocation
	if code := s.call("POST", "/invoke/"+fn+"/async", map[string]any{"event": event}, &acc); code != 202 {
		t.Fatalf("enqueue %s: %d", fn, code)
	}
	return acc.InvocationID
}

// lfContainers counts the containers, in any state, of function fnID of
// the server at db.
func lfContainers(t *testing.T, cli *client.Client, db, fnID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", runner.LabelInstance+"="+instanceID(db)), filters.Arg("label", docker.LabelFunction+"="+fnID))})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// lfGone waits at most within for function fnID to have no container.
func lfGone(t *testing.T, cli *client.Client, db, fnID string, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for lfContainers(t, cli, db, fnID) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// lfStop signals the server and waits at most within for it to exit; it
// kills a server that has not, and says so.
func lfStop(s *server, sig syscall.Signal, within time.Duration) (took time.Duration, exited bool, err error) {
	begin := time.Now()
	s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return time.Since(begin), true, err
	case <-time.After(within):
		s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err // for the cleanup
		return time.Since(begin), false, nil
	}
}

// lfFDs counts the open descriptors of process pid, -1 when it cannot.
func lfFDs(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

// TestLambdaInitErrorThenTheRuntimeLivesOn runs a runtime that posts
// /runtime/init/error and then sleeps instead of exiting: its invocation
// fails with the init error before its timeout and the container is killed;
// async invocations of it do not keep the workers from other functions'
// work; SIGTERM stops the server within its grace; the log audits clean.
func TestLambdaInitErrorThenTheRuntimeLivesOn(t *testing.T) {
	cli := dockertest.Client(t)
	img := lfImage(t, cli)
	stuck := map[string]any{"name": "stuck", "image": img.Tag, "mode": "lambda", "max_attempts": 1,
		"env": map[string]string{"LF_FAULT": "init-error"}}
	wantInitError := func(t *testing.T, what string, inv projections.Invocation) {
		t.Helper()
		if inv.Status != projections.StatusFailed || inv.ErrorType != "function_error" ||
			inv.LambdaErrorType != "Runtime.ImportModuleError" || !strings.HasPrefix(inv.Error, "cannot load the handler") ||
			!strings.Contains(inv.Logs, "rt: loading the handler") {
			t.Errorf("%s: %s %s %s %q, logs %q; want FAILED with the init error and the runtime's logs",
				what, inv.Status, inv.ErrorType, inv.LambdaErrorType, inv.Error, inv.Logs)
		}
	}

	t.Run("a sync call ends within its timeout and the container goes", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "events.db")
		lfRemoveContainersAtCleanup(t, cli, db)
		s := startServer(t, db)
		id := lfRegister(t, s, stuck)
		for _, timeout := range []int{2, 30} {
			c := lfInvoke(s, "/invoke/stuck", map[string]any{"event": map[string]any{}, "timeout": timeout}, time.Duration(timeout)*time.Second+30*time.Second)
			if c.err != nil {
				t.Errorf("a call with a %d s timeout: no answer after %v: %v", timeout, c.elapsed.Round(time.Millisecond), c.err)
				continue
			}
			t.Logf("a call with a %d s timeout: %d after %v", timeout, c.code, c.elapsed.Round(time.Millisecond))
			// The container's start comes first, then at most 2 s for the
			// runtime to exit, never past the timeout.
			if c.code != http.StatusBadGateway || c.elapsed > time.Duration(min(timeout, 2))*time.Second+10*time.Second {
				t.Errorf("a call with a %d s timeout: %d after %v; want 502 within its timeout", timeout, c.code, c.elapsed)
			}
			wantInitError(t, fmt.Sprintf("a call with a %d s timeout", timeout), c.inv)
			if rec := lfAwait(s, c.inv.InvocationID, time.Second); rec.Status != projections.StatusFailed {
				t.Errorf("the record of the call with a %d s timeout: %s", timeout, rec.Status)
			}
			if !lfGone(t, cli, db, id, 20*time.Second) {
				t.Errorf("after a call with a %d s timeout the function's container is still there", timeout)
			}
		}
		if _, ok, err := lfStop(s, syscall.SIGTERM, 40*time.Second); !ok || err != nil {
			t.Errorf("SIGTERM: exited %v, %v", ok, err)
		}
		dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
		assertAudit(t, db)
	})

	t.Run("async calls do not pin the workers", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "events.db")
		lfRemoveContainersAtCleanup(t, cli, db)
		s := startServer(t, db, "--workers", "2")
		lfRegister(t, s, stuck)
		lfRegister(t, s, map[string]any{"name": "ok", "image": img.Tag, "mode": "lambda"})
		var stuckIDs []string
		for range 2 {
			stuckIDs = append(stuckIDs, lfEnqueue(t, s, "stuck", map[string]any{}))
		}
		s.waitRunning()
		ok := lfEnqueue(t, s, "ok", map[string]string{"name": "Ada"})
		if inv := lfAwait(s, ok, 60*time.Second); inv.Status != projections.StatusCompleted || !strings.Contains(inv.Result, "Hello, Ada!") {
			t.Errorf("another function's async call beside two stuck ones: %s %q %s", inv.Status, inv.Result, inv.Error)
		}
		for i, id := range stuckIDs {
			wantInitError(t, fmt.Sprintf("async call %d", i), lfAwait(s, id, 30*time.Second))
		}
		if _, ok, err := lfStop(s, syscall.SIGTERM, 40*time.Second); !ok || err != nil {
			t.Errorf("SIGTERM: exited %v, %v", ok, err)
		}
		dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
		assertAudit(t, db)
	})

	t.Run("SIGTERM stops the server within its grace", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "events.db")
		lfRemoveContainersAtCleanup(t, cli, db)
		const grace = 10 * time.Second
		s := startServer(t, db, "--workers", "2", "--grace", grace.String())
		lfRegister(t, s, stuck)
		for range 2 {
			lfEnqueue(t, s, "stuck", map[string]any{})
		}
		answered := make(chan lfCall, 1)
		go func() {
			answered <- lfInvoke(s, "/invoke/stuck", map[string]any{"event": map[string]any{}, "timeout": 600}, 3*time.Minute)
		}()
		s.waitRunning()
		took, exited, err := lfStop(s, syscall.SIGTERM, grace+20*time.Second)
		t.Logf("SIGTERM with --grace %v: exited %v after %v", grace, exited, took.Round(time.Millisecond))
		if !exited || err != nil || took > grace+5*time.Second {
			t.Errorf("SIGTERM with --grace %v: exited %v after %v, %v", grace, exited, took.Round(time.Millisecond), err)
		}
		if c := <-answered; c.err == nil && c.code != http.StatusBadGateway {
			t.Errorf("the sync call during SIGTERM: %d %+v", c.code, c.inv)
		}
		dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
		assertAudit(t, db)
	})
}

// TestLambdaTimeoutKeepsTheStartUpLogs runs a runtime that writes a line
// at start and never asks for an event: its invocation times out, and the
// record has the line.
func TestLambdaTimeoutKeepsTheStartUpLogs(t *testing.T) {
	cli := dockertest.Client(t)
	img := lfImage(t, cli)
	db := filepath.Join(t.TempDir(), "events.db")
	lfRemoveContainersAtCleanup(t, cli, db)
	s := startServer(t, db)
	id := lfRegister(t, s, map[string]any{"name": "slow", "image": img.Tag, "mode": "lambda", "env": map[string]string{"LF_FAULT": "no-next"}})
	c := lfInvoke(s, "/invoke/slow", map[string]any{"event": map[string]any{}, "timeout": 2}, time.Minute)
	if c.err != nil || c.code != http.StatusGatewayTimeout || c.inv.ErrorType != "timeout" {
		t.Fatalf("a call with a 2 s timeout: %d %+v %v", c.code, c.inv, c.err)
	}
	if c.inv.Logs != "rt: warming caches\n" {
		t.Errorf("logs %q; want what the runtime wrote before the timeout", c.inv.Logs)
	}
	if rec := lfAwait(s, c.inv.InvocationID, time.Second); rec.Logs != c.inv.Logs {
		t.Errorf("the record's logs %q, the answer's %q", rec.Logs, c.inv.Logs)
	}
	if !lfGone(t, cli, db, id, 20*time.Second) {
		t.Error("the timed-out container is still there")
	}
	if _, ok, err := lfStop(s, syscall.SIGTERM, 40*time.Second); !ok || err != nil {
		t.Errorf("SIGTERM: exited %v, %v", ok, err)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
	assertAudit(t, db)
}

// TestLambdaSocketFlood runs the server with 256 descriptors and a runtime
// that dials its Runtime API socket 3,000 times and holds every
// connection: the server's descriptors stay bounded, /healthz answers
// meanwhile, and the same container goes on serving its function.
func TestLambdaSocketFlood(t *testing.T) {
	cli := dockertest.Client(t)
	img := lfImage(t, cli)
	dir := t.TempDir()
	limited := filepath.Join(dir, "limited")
	script := "#!/bin/sh\nulimit -n 256 && exec " + binary(t) + " \"$@\"\n"
	if err := os.WriteFile(limited, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "events.db")
	lfRemoveContainersAtCleanup(t, cli, db)
	s := startBinary(t, limited, db)
	lfRegister(t, s, map[string]any{"name": "flood", "image": img.Tag, "mode": "lambda", "timeout": 30})
	warm := lfInvoke(s, "/invoke/flood", map[string]any{"event": map[string]string{"name": "warm"}}, time.Minute)
	if warm.err != nil || warm.code != 200 {
		t.Fatalf("the first call: %d %+v %v", warm.code, warm.inv, warm.err)
	}
	pid := s.cmd.Process.Pid
	before := lfFDs(pid)

	// Sample the server's descriptors and /healthz while the flood runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var most int
	var slowest time.Duration
	var unhealthy []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			most = max(most, lfFDs(pid))
			if n%10 != 0 {
				continue
			}
			begin := time.Now()
			resp, err := client.Get("http://" + s.addr + "/healthz")
			slowest = max(slowest, time.Since(begin))
			if err != nil {
				unhealthy = append(unhealthy, err.Error())
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				unhealthy = append(unhealthy, resp.Status)
			}
		}
	}()
	flood := lfInvoke(s, "/invoke/flood", map[string]any{"event": map[string]any{"name": "flood", "flood": 3000, "hold_ms": 3000}}, time.Minute)
	close(stop)
	wg.Wait()
	var answer struct {
		Dialled int `json:"dialled"`
		Failed  int `json:"failed"`
	}
	if flood.err == nil {
		json.Unmarshal([]byte(flood.inv.Result), &answer)
	}
	t.Logf("server descriptors %d before the flood, at most %d during it; the runtime dialled %d times (%d failed); /healthz at worst %v",
		before, most, answer.Dialled, answer.Failed, slowest.Round(time.Millisecond))
	if flood.err != nil || flood.code != 200 || answer.Dialled < 1000 {
		t.Errorf("the flooding call: %d %s %q %v", flood.code, flood.inv.Status, flood.inv.Error, flood.err)
	}
	// Per container: 8 connections in their handshake at most, and as many
	// of the runtime's being served, beside what the server held before.
	if most > before+32 {
		t.Errorf("the server's descriptors rose from %d to %d during the flood", before, most)
	}
	if len(unhealthy) > 0 || slowest > 2*time.Second {
		t.Errorf("/healthz during the flood: at worst %v; failures %v", slowest, unhealthy)
	}
	after := lfInvoke(s, "/invoke/flood", map[string]any{"event": map[string]string{"name": "after"}}, time.Minute)
	if after.err != nil || after.code != 200 || !strings.Contains(after.inv.Result, "Hello, after!") || after.inv.ContainerID != warm.inv.ContainerID {
		t.Errorf("a call after the flood: %d %+v %v; want it answered by the same container (%s)", after.code, after.inv, after.err, warm.inv.ContainerID)
	}
	if _, ok, err := lfStop(s, syscall.SIGTERM, 40*time.Second); !ok || err != nil {
		t.Errorf("SIGTERM: exited %v, %v", ok, err)
	}
	// The server has exited: its output is complete.
	if strings.Contains(s.out.String(), "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", s.out)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
	assertAudit(t, db)
}
