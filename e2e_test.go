package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/disktest"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/agent"
)

// server is the real binary, started as a user would.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	out  *bytes.Buffer
	done chan error
}

var buildOnce sync.Once
var binPath string

func binary(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "minilambda-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binPath = filepath.Join(dir, "minilambda")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	})
	return binPath
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServer(t testing.TB, db string, args ...string) *server {
	t.Helper()
	return startBinary(t, binary(t), db, args...)
}

// startBinary starts bin, a minilambda binary, serving the log at db.
func startBinary(t testing.TB, bin, db string, args ...string) *server {
	t.Helper()
	return startBinaryEnv(t, bin, db, nil, args...)
}

// startBinaryEnv is startBinary with more environment variables.
func startBinaryEnv(t testing.TB, bin, db string, env []string, args ...string) *server {
	t.Helper()
	s := &server{t: t, addr: freeAddr(t), out: &bytes.Buffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"serve", "--addr", s.addr, "--db", db}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		// A server killed here leaves its containers behind, stopped by
		// their inits; a test removes what it made.
		dockertest.RemoveContainers(runner.LabelInstance, instanceID(db))
		if t.Failed() {
			t.Logf("server log:\n%s", s.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\n%s", err, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) call(method, path string, body any, out any) int {
	s.t.Helper()
	return s.callAs(method, path, body, out, "")
}

// callToken is call with the server's API token.
func (s *server) callToken(method, path string, body any, token string) int {
	s.t.Helper()
	return s.callAs(method, path, body, nil, token)
}

func (s *server) callAs(method, path string, body any, out any, token string) int {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.addr+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (s *server) stop(sig syscall.Signal) error {
	s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		s.t.Fatalf("server did not exit after %v", sig)
		return nil
	}
}

// waitRunning returns once an invocation is RUNNING.
func (s *server) waitRunning() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var p page
		s.call("GET", "/invocations?status=RUNNING", nil, &p)
		if len(p.Invocations) > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("nothing started running")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type page struct {
	Invocations []projections.Invocation
	NextCursor  string `json:"next_cursor"`
}

// TestCrashRecovery queues async work against the real engine, SIGKILLs
// the server with invocations queued and running, restarts it, and checks
// that every acknowledged invocation ends, no container is left and the
// log audits clean.
func TestCrashRecovery(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-fn")
	db := filepath.Join(t.TempDir(), "events.db")
	flags := []string{"--workers", "2", "--retry-base", "200ms"}
	s := startServer(t, db, flags...)
	if code := s.call("POST", "/functions", map[string]any{"name": "fn", "image": img.Tag}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	ids := s.enqueue("fn", 8, 1500)
	s.waitRunning()
	s.stop(syscall.SIGKILL)

	s = startServer(t, db, flags...)
	for _, inv := range s.settle(ids) {
		if inv.Status == "FAILED" && inv.Error == "" {
			t.Errorf("%s FAILED without a reason", inv.InvocationID)
		}
	}
	s.noneUnfinished()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("server exit after SIGTERM: %v", err)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
	out, _, err := runCmd(t, "audit", "--db", db)
	if err != nil || !strings.HasPrefix(out, "audit ok") {
		t.Fatalf("audit after the crash: %q %v", out, err)
	}
	// The restart found at least the invocation seen RUNNING and retried it.
	out, _, _ = runCmd(t, "dump", "--db", db, "--type", "recovery.decided")
	var rec struct{ Data projections.RecoveryDecided }
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rec); err != nil || rec.Data.Retried < 1 || rec.Data.Interrupted < 1 {
		t.Errorf("recovery decision %q: %+v %v", out, rec, err)
	}
}

// TestSIGTERMLetsSyncInvocationAnswer sends SIGTERM while a sync
// invocation runs: it must answer 200 before the process exits.
func TestSIGTERMLetsSyncInvocationAnswer(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-fn")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	s.call("POST", "/functions", map[string]any{"name": "fn", "image": img.Tag}, nil)
	type answer struct {
		code int
		inv  projections.Invocation
	}
	answered := make(chan answer, 1)
	go func() {
		var a answer
		a.code = s.call("POST", "/invoke/fn", map[string]any{"event": map[string]any{"name": "late", "sleep_ms": 2000}}, &a.inv)
		answered <- a
	}()
	s.waitRunning()
	exited := make(chan error, 1)
	go func() { exited <- s.stop(syscall.SIGTERM) }()
	a := <-answered
	if a.code != 200 || a.inv.Status != "COMPLETED" {
		t.Fatalf("sync invocation during SIGTERM: %d %+v", a.code, a.inv)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	// New requests are refused while it drains: the process is gone now.
	if _, err := http.Get("http://" + s.addr + "/healthz"); err == nil {
		t.Error("server still answers after SIGTERM")
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
}

// enqueue queues n async invocations of fn, the i-th with the event
// {"name": "<i>", "sleep_ms": sleepMS}, and returns their ids.
func (s *server) enqueue(fn string, n, sleepMS int) []string {
	s.t.Helper()
	var ids []string
	for i := range n {
		var acc struct {
			InvocationID string `json:"invocation_id"`
			Status       string
		}
		if code := s.call("POST", "/invoke/"+fn+"/async", map[string]any{"event": map[string]any{"name": fmt.Sprint(i), "sleep_ms": sleepMS}}, &acc); code != 202 || acc.Status != "PENDING" {
			s.t.Fatalf("enqueue %d: %d %+v", i, code, acc)
		}
		ids = append(ids, acc.InvocationID)
	}
	return ids
}

// settle waits until every invocation ids (queued by enqueue) has ended
// and returns the records; a COMPLETED one must carry its own greeting.
func (s *server) settle(ids []string) []projections.Invocation {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var out []projections.Invocation
	for i, id := range ids {
		for {
			var inv projections.Invocation
			s.call("GET", "/invocations/"+id, nil, &inv)
			if inv.Status == "COMPLETED" {
				if want := fmt.Sprintf("{\"message\":\"Hello, %d!\"}\n", i); inv.Result != want {
					s.t.Errorf("%s: result %q, want %q", id, inv.Result, want)
				}
			}
			if inv.Status == "COMPLETED" || inv.Status == "FAILED" {
				out = append(out, inv)
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("invocation %s stuck in %s", id, inv.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

// noneUnfinished checks that no invocation is PENDING or RUNNING.
func (s *server) noneUnfinished() {
	s.t.Helper()
	for _, st := range []string{"PENDING", "RUNNING"} {
		var p page
		s.call("GET", "/invocations?status="+st, nil, &p)
		if len(p.Invocations) != 0 {
			s.t.Errorf("%d invocations still %s", len(p.Invocations), st)
		}
	}
}

// dumpTypes counts the events of each type in the log at db.
func dumpTypes(t *testing.T, db string) map[string]int {
	t.Helper()
	out, _, err := runCmd(t, "dump", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for line := range strings.Lines(out) {
		var e struct{ Type string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("dump line %q: %v", line, err)
		}
		n[e.Type]++
	}
	return n
}

// TestSIGTERMLeavesQueuedWork queues more than the grace period can run
// and sends SIGTERM once one attempt runs: that attempt finishes, nothing
// else starts or fails, and the next start runs the rest, each in its
// first attempt.
func TestSIGTERMLeavesQueuedWork(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-fn")
	db := filepath.Join(t.TempDir(), "events.db")
	flags := []string{"--workers", "1", "--grace", "5s"}
	s := startServer(t, db, flags...)
	if code := s.call("POST", "/functions", map[string]any{"name": "fn", "image": img.Tag, "max_attempts": 1}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	ids := s.enqueue("fn", 8, 1500)
	s.waitRunning()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	n := dumpTypes(t, db)
	if n["invocation.started"] < 1 || n["invocation.started"] > 2 || n["invocation.completed"] != n["invocation.started"] ||
		n["invocation.failed"]+n["invocation.timed_out"]+n["invocation.retried"] != 0 {
		t.Errorf("after SIGTERM the log holds %v: only the attempts under way should have run, and ended", n)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))

	s = startServer(t, db, flags...)
	for _, inv := range s.settle(ids) {
		if inv.Status != "COMPLETED" || inv.Attempts != 1 {
			t.Errorf("%s after the restart: %s in %d attempts: %s", inv.InvocationID, inv.Status, inv.Attempts, inv.Error)
		}
	}
	s.noneUnfinished()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if out, _, err := runCmd(t, "audit", "--db", db); err != nil || !strings.HasPrefix(out, "audit ok") {
		t.Fatalf("audit: %q %v", out, err)
	}
}

// TestServeWithoutItsPort starts a server on a port in use, over a log an
// earlier run left with work to recover: it exits at once saying so, and
// records and runs nothing; the next start on a free port recovers all.
func TestServeWithoutItsPort(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-fn")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--workers", "1")
	if code := s.call("POST", "/functions", map[string]any{"name": "fn", "image": img.Tag}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	ids := s.enqueue("fn", 3, 1000)
	s.waitRunning()
	s.stop(syscall.SIGKILL)
	before := dumpTypes(t, db)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--addr", taken.Addr().String(), "--db", db).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("serve on a port in use: %v\n%s", err, out)
	}
	if after := dumpTypes(t, db); !maps.Equal(after, before) {
		t.Errorf("a server without its port wrote to the log: %v, before %v", after, before)
	}

	s = startServer(t, db, "--workers", "1")
	s.settle(ids)
	s.noneUnfinished()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
	assertAudit(t, db)
}

// assertAudit runs the audit command on the log at db.
func assertAudit(t testing.TB, db string) {
	t.Helper()
	if out, _, err := runCmd(t, "audit", "--db", db); err != nil || !strings.HasPrefix(out, "audit ok") {
		t.Errorf("audit: %q %v", out, err)
	}
}

// TestSlowClientsCannotStarveTheServer runs the server with 256 file
// descriptors and sends it 300 strangers that trickle request bodies a byte
// a second: each is answered 401 and cut off at once, and a client with
// the token is served meanwhile, without the server running out of
// descriptors.
func TestSlowClientsCannotStarveTheServer(t *testing.T) {
	dockertest.Client(t)
	dir := t.TempDir()
	limited := filepath.Join(dir, "limited")
	script := "#!/bin/sh\nulimit -n 256 && exec " + binary(t) + " \"$@\"\n"
	if err := os.WriteFile(limited, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	const token = "slow-clients-token"
	s := startBinary(t, limited, filepath.Join(dir, "events.db"), "--token", token)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	var answered atomic.Int32
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				return
			}
			defer conn.Close()
			go func() {
				<-ctx.Done()
				conn.Close()
			}()
			io.WriteString(conn, "POST /functions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
			go func() {
				for ctx.Err() == nil {
					if _, err := conn.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}()
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil && resp.StatusCode == 401 {
				answered.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	for i := range 5 {
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/functions", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		client := &http.Client{Timeout: 5 * time.Second}
		begin := time.Now()
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d with the token among 300 slow strangers: %v %v", i, resp, err)
		}
		resp.Body.Close()
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("request %d with the token took %v", i, d)
		}
	}
	stop()
	wg.Wait()
	if n := answered.Load(); n < 250 {
		t.Errorf("only %d of 300 strangers were answered 401", n)
	}
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if strings.Contains(s.out.String(), "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", s.out)
	}
	assertAudit(t, filepath.Join(dir, "events.db"))
}

// TestSpoolOnAFullDisk serves a log on a small file system, where uploads
// spool too: a spool file an upload cut by kill -9 left is gone at start;
// an upload the full disk cannot hold is 507, naming no path; once there
// is room the same upload loads, and nothing is left in the spool.
func TestSpoolOnAFullDisk(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-spool")
	rc, err := cli.ImageSave(context.Background(), []string{img.Tag})
	if err != nil {
		t.Fatal(err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tmp := disktest.Small(t, int64(len(archive))+(4<<20))
	db := filepath.Join(tmp, "events.db")
	spool := filepath.Join(tmp, "spool-"+instanceID(db))
	leftover := filepath.Join(spool, "minilambda-image-1234.tar")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leftover, []byte("an upload cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, db)
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spool file an earlier run left: %v", err)
	}
	upload := func() (int, string) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreateFormFile("image", "image.tar")
		w.Write(archive)
		mw.Close()
		resp, err := http.Post("http://"+s.addr+"/images", mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(answer)
	}
	filler := disktest.Fill(t, tmp)
	if code, answer := upload(); code != 507 || strings.Contains(answer, tmp) {
		t.Errorf("an upload to a full disk: %d %s", code, answer)
	}
	disktest.Free(t, filler)
	if code, answer := upload(); code != 201 || !strings.Contains(answer, img.Tag) {
		t.Errorf("the upload once there is room: %d %s", code, answer)
	}
	if entries, err := os.ReadDir(spool); err != nil || len(entries) != 0 {
		t.Errorf("the spool after the uploads: %v %v", entries, err)
	}
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(s.out.String(), "no space left on device") {
		t.Errorf("the server's log lacks the cause of the 507:\n%s", s.out)
	}
	assertAudit(t, db)
}

// TestLambdaOverHTTP registers the Lambda Go sample over the REST API of
// the binary, which builds the lambda init by itself beside its log, and
// invokes it sync and async; the socket directory is gone after SIGTERM.
func TestLambdaOverHTTP(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildSampleAs(t, cli, "examples/hello-lambda-go", "minilambda-e2e-lambda", "bootstrap")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	if code := s.call("POST", "/functions", map[string]any{"name": "hello", "image": img.Tag, "mode": "lambda"}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	var inv projections.Invocation
	if code := s.call("POST", "/invoke/hello", map[string]any{"event": map[string]string{"name": "Ada"}}, &inv); code != 200 ||
		inv.Result != `{"message":"Hello, Ada!"}` || !strings.Contains(inv.Logs, `greeting "Ada" in `+inv.InvocationID) || inv.InitDuration <= 0 {
		t.Fatalf("sync: %d %+v", code, inv)
	}
	var queued projections.Invocation
	if code := s.call("POST", "/invoke/hello/async", map[string]any{"event": map[string]string{"name": "Bo"}}, &queued); code != 202 {
		t.Fatalf("async: %d", code)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		s.call("GET", "/invocations/"+queued.InvocationID, nil, &inv)
		if inv.Status == "COMPLETED" || inv.Status == "FAILED" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if inv.Status != "COMPLETED" || inv.Result != `{"message":"Hello, Bo!"}` {
		t.Errorf("async: %+v", inv)
	}
	var bad map[string]string
	if code := s.call("POST", "/functions", map[string]any{"name": "x", "image": img.Tag, "mode": "lambda",
		"env": map[string]string{"AWS_LAMBDA_RUNTIME_API": "10.0.0.1:80"}}, &bad); code != 400 || !strings.Contains(bad["error"], "set by the platform") {
		t.Errorf("a reserved variable: %d %v", code, bad)
	}
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	dockertest.AssertNoContainers(t, cli, runner.LabelInstance, instanceID(db))
	if builds, _ := filepath.Glob(filepath.Join(filepath.Dir(db), "init", "init-*")); len(builds) != 1 {
		t.Errorf("the init's builds beside the log: %v", builds)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), agent.SocketDirPrefix(instanceID(db))+"*")); len(left) > 0 {
		t.Errorf("the server's socket directory outlived it: %v", left)
	}
}
