package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/docker"
)

// lambdaAnswer is what internal/testfn/lambdago answers.
type lambdaAnswer struct {
	Message     string            `json:"message"`
	Count       int64             `json:"count"`
	Pid         int               `json:"pid"`
	RequestID   string            `json:"request_id"`
	FunctionARN string            `json:"function_arn"`
	DeadlineMS  int64             `json:"deadline_ms"`
	Env         map[string]string `json:"env"`
}

func invokeLambda(t *testing.T, f *fixture, ref string, event any, timeout int) (projections.Invocation, lambdaAnswer) {
	t.Helper()
	b, _ := json.Marshal(event)
	inv, err := f.svc.Invoke(context.Background(), ref, function.Request{Event: b, Timeout: timeout})
	if err != nil {
		t.Fatalf("invoke %s %s: %v", ref, b, err)
	}
	var a lambdaAnswer
	if inv.Status == projections.StatusCompleted {
		if err := json.Unmarshal([]byte(inv.Result), &a); err != nil {
			t.Fatalf("result %q: %v", inv.Result, err)
		}
	}
	return inv, a
}

// TestLambdaMode runs a function written with aws-lambda-go, unchanged,
// on the real engine.
func TestLambdaMode(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../internal/testfn/lambdago", "minilambda-runner-lambdago")

	t.Run("a cold call, then warm calls in the same process", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{Region: "eu-west-3"})
		f.register(function.Spec{Name: "lg", Mode: function.ModeLambda, Handler: "main.handle", Env: map[string]string{"OWN": "mine", "TZ": "Europe/Paris"}})
		first, a := invokeLambda(t, f, "lg", map[string]string{"name": "a"}, 7)
		if first.Status != "COMPLETED" || a.Count != 1 || a.Message != "Hello, a!" {
			t.Fatalf("first call: %+v %+v", first, a)
		}
		if first.InitDuration <= 0 {
			t.Errorf("the cold call has no init_duration: %+v", first)
		}
		if want := "lambdago: starting\nhandling \"a\" (stdout)\nhandling \"a\" (stderr)\n"; first.Logs != want {
			t.Errorf("cold call's logs %q, want %q", first.Logs, want)
		}
		if a.RequestID != first.InvocationID || a.FunctionARN != "arn:aws:lambda:eu-west-3:000000000000:function:lg" {
			t.Errorf("context: request %s (invocation %s), arn %s", a.RequestID, first.InvocationID, a.FunctionARN)
		}
		// The timeout counts from when the runtime took the event, after
		// its container started.
		if d := time.UnixMilli(a.DeadlineMS).Sub(*first.StartedAt); d < 6500*time.Millisecond || d > 7500*time.Millisecond {
			t.Errorf("deadline %v after the event was taken, for a 7 s timeout", d)
		}
		for k, want := range map[string]string{
			"AWS_LAMBDA_FUNCTION_NAME": "lg", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
			"AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/lg", "AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "eu-west-3",
			"_HANDLER": "main.handle", "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
			"TZ": "Europe/Paris", "OWN": "mine", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
		} {
			if a.Env[k] != want {
				t.Errorf("%s=%q, want %q", k, a.Env[k], want)
			}
		}
		if s := a.Env["AWS_LAMBDA_LOG_STREAM_NAME"]; !strings.Contains(s, "/[$LATEST]") {
			t.Errorf("log stream name %q", s)
		}
		for i, name := range []string{"b", "c"} {
			inv, w := invokeLambda(t, f, "lg", map[string]string{"name": name}, 0)
			if inv.Status != "COMPLETED" || w.Count != int64(i+2) || w.Pid != a.Pid || inv.ContainerID != first.ContainerID {
				t.Fatalf("warm call %d: %+v %+v", i, inv, w)
			}
			if inv.InitDuration != 0 {
				t.Errorf("warm call %d has an init_duration of %d ms", i, inv.InitDuration)
			}
			if want := fmt.Sprintf("handling %q (stdout)\nhandling %q (stderr)\n", name, name); inv.Logs != want {
				t.Errorf("warm call %d's logs %q, want %q", i, inv.Logs, want)
			}
			if got := types(f.events(inv.InvocationID)); got != "queued started completed" {
				t.Errorf("events of warm call %d: %s", i, got)
			}
		}
	})

	t.Run("handler errors, panics, exits and timeouts", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "lg", Mode: function.ModeLambda})
		_, warm := invokeLambda(t, f, "lg", map[string]string{"name": "warm"}, 0)

		inv, _ := invokeLambda(t, f, "lg", map[string]string{"error": "boom"}, 0)
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorFunction || inv.LambdaErrorType != "errorString" || inv.Error != "boom" ||
			inv.Result != `{"errorMessage":"boom","errorType":"errorString"}` {
			t.Errorf("handler error: %+v", inv)
		}
		// A handler error leaves the runtime as it was.
		if _, a := invokeLambda(t, f, "lg", map[string]string{}, 0); a.Pid != warm.Pid || a.Count != 3 {
			t.Errorf("after a handler error: %+v, before it %+v", a, warm)
		}

		inv, _ = invokeLambda(t, f, "lg", map[string]string{"panic": "oops"}, 0)
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorFunction || inv.Error != "oops" || !strings.Contains(inv.Result, "stackTrace") {
			t.Errorf("panic: %+v", inv)
		}

		inv, _ = invokeLambda(t, f, "lg", map[string]string{"name": "x"}, 0)
		if inv.Status != "COMPLETED" {
			t.Fatalf("after the panic: %+v", inv)
		}
		inv, _ = invokeLambda(t, f, "lg", map[string]int{"exit": 3}, 0)
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorFunction || inv.LambdaErrorType != "Runtime.ExitError" ||
			inv.ExitCode == nil || *inv.ExitCode != 3 || !strings.Contains(inv.Error, "exit status 3") || !strings.Contains(inv.Logs, "handling") {
			t.Errorf("exit mid-invocation: %+v", inv)
		}
		exited := inv.ContainerID
		inv, a := invokeLambda(t, f, "lg", map[string]string{"name": "y"}, 0)
		if inv.Status != "COMPLETED" || a.Count != 1 || inv.ContainerID == exited || inv.InitDuration <= 0 {
			t.Errorf("after the exit, not a new container: %+v %+v", inv, a)
		}

		inv, _ = invokeLambda(t, f, "lg", map[string]any{"name": "slow", "sleep_ms": 10000}, 1)
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorTimeout || !strings.Contains(inv.Logs, `handling "slow"`) {
			t.Errorf("timeout: %+v", inv)
		}
		timedOut := inv.ContainerID
		if inv, a := invokeLambda(t, f, "lg", map[string]string{"name": "z"}, 0); inv.Status != "COMPLETED" || a.Count != 1 || inv.ContainerID == timedOut {
			t.Errorf("after the timeout, not a new container: %+v %+v", inv, a)
		}

		inv, _ = invokeLambda(t, f, "lg", map[string]int{"echo": 7 << 20}, 0)
		if inv.Status != "FAILED" || inv.LambdaErrorType != "Function.ResponseSizeTooLarge" {
			t.Errorf("a response over 6 MiB: %s %s %s", inv.Status, inv.LambdaErrorType, inv.Error)
		}

		inv, _ = invokeLambda(t, f, "lg", map[string]int{"alloc_mb": 400}, 0)
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorOutOfMemory {
			t.Errorf("past its memory: %s %s %s", inv.Status, inv.ErrorType, inv.Error)
		}
	})

	t.Run("each invocation gets only its own logs", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "lg", Mode: function.ModeLambda})
		var wg sync.WaitGroup
		for c := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					name := fmt.Sprintf("c%d-%d", c, i)
					inv, _ := invokeLambda(t, f, "lg", map[string]any{"name": name, "log_bytes": 3000}, 0)
					logs := strings.TrimPrefix(inv.Logs, "lambdago: starting\n")
					want := fmt.Sprintf("handling %q (stdout)\nhandling %q (stderr)\n", name, name) + strings.Repeat("o", 1500) + strings.Repeat("e", 1500)
					if inv.Status != "COMPLETED" || logs != want {
						t.Errorf("%s: %s, logs %.200q", name, inv.Status, logs)
					}
				}
			}()
		}
		wg.Wait()
	})

	t.Run("async attempts and retries", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "lg", Mode: function.ModeLambda, MaxAttempts: 2})
		ok := f.settle(f.enqueue("lg", map[string]string{"name": "async"}, "").InvocationID, time.Minute)
		if ok.Status != "COMPLETED" || !strings.Contains(ok.Result, "Hello, async!") || ok.Attempts != 1 {
			t.Errorf("async: %+v", ok)
		}
		failed := f.settle(f.enqueue("lg", map[string]string{"error": "again"}, "").InvocationID, time.Minute)
		if failed.Status != "FAILED" || failed.Attempts != 2 || failed.LambdaErrorType != "errorString" || !strings.Contains(failed.Error, "again") {
			t.Errorf("async failure: %+v", failed)
		}
		if got := types(f.events(failed.InvocationID)); got != "queued started retried started failed" {
			t.Errorf("events: %s", got)
		}
	})

	t.Run("an update starts containers of the new version", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "lg", Mode: function.ModeLambda, Env: map[string]string{"OWN": "v1"}})
		before, a := invokeLambda(t, f, "lg", map[string]string{}, 0)
		env := map[string]string{"OWN": "v2"}
		if _, err := f.ctl.Update(context.Background(), "lg", function.Patch{Env: &env}); err != nil {
			t.Fatal(err)
		}
		after, b := invokeLambda(t, f, "lg", map[string]string{}, 0)
		if a.Env["OWN"] != "v1" || b.Env["OWN"] != "v2" || b.Env["AWS_LAMBDA_FUNCTION_VERSION"] != "$LATEST" || after.ContainerID == before.ContainerID {
			t.Errorf("before the update %v in %s, after %v in %s", a.Env, before.ContainerID, b.Env, after.ContainerID)
		}
	})

	// The platform's defaults hold in lambda mode: no capabilities, no new
	// privileges, the pids and memory limits, a read-only root where asked,
	// and "network": "none" reaching its Runtime API all the same.
	t.Run("container defaults, read-only, no network", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		fn := f.register(function.Spec{Name: "lg", Mode: function.ModeLambda, Network: "none", ReadOnly: true, MemoryMB: 128})
		inv, _ := invokeLambda(t, f, "lg", map[string]string{"name": "sealed"}, 0)
		if inv.Status != "COMPLETED" {
			t.Fatalf("network none, read-only: %+v", inv)
		}
		list, err := cli.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", runner.LabelInstance+"="+f.instance), filters.Arg("label", docker.LabelFunction+"="+fn.ID))})
		if err != nil || len(list) != 1 {
			t.Fatalf("the function's containers: %v %d", err, len(list))
		}
		info, err := cli.ContainerInspect(context.Background(), list[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		hc := info.HostConfig
		if fmt.Sprint(hc.CapDrop) != "[ALL]" || fmt.Sprint(hc.SecurityOpt) != "[no-new-privileges]" || hc.PidsLimit == nil ||
			*hc.PidsLimit != docker.PidsLimit || hc.Memory != 128<<20 || !hc.ReadonlyRootfs || hc.NetworkMode != "none" || hc.Privileged ||
			hc.NanoCPUs != function.DefaultPooledCPUs*1e9 {
			t.Errorf("host config: caps %v, security %v, pids %v, memory %d, read-only %v, network %s, nano cpus %d", hc.CapDrop, hc.SecurityOpt,
				hc.PidsLimit, hc.Memory, hc.ReadonlyRootfs, hc.NetworkMode, hc.NanoCPUs)
		}
		if len(info.Mounts) != 2 {
			t.Errorf("mounts: %+v", info.Mounts)
		}
		for _, m := range info.Mounts {
			if m.RW {
				t.Errorf("mount %s on %s is writable", m.Source, m.Destination)
			}
			if m.Destination == "/run/minilambda/api" {
				// The socket's directory sits in one only the server's user
				// may enter.
				if st, err := os.Stat(filepath.Dir(m.Source)); err != nil || st.Mode().Perm() != 0o700 {
					t.Errorf("the sockets' directory %s: %v %v", filepath.Dir(m.Source), st.Mode(), err)
				}
			}
		}
	})
}

// scriptedRuntime is a custom runtime, standard library only, that does
// to the Runtime API what each event's steps say, and answers with what it
// got back: every step's result since it started, so that what happened
// after one invocation was answered shows in the next one's result.
const scriptedRuntime = `package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

type step struct {
	Method  string ` + "`json:\"method\"`" + `
	Path    string ` + "`json:\"path\"`" + `
	Body    string ` + "`json:\"body\"`" + `
	Size    int    ` + "`json:\"size\"`" + `
	SleepMS int    ` + "`json:\"sleep_ms\"`" + `
	List    string ` + "`json:\"list\"`" + `
	Dial    string ` + "`json:\"dial\"`" + `
	Log     string ` + "`json:\"log\"`" + `
}

type result struct {
	Step      string   ` + "`json:\"step\"`" + `
	Status    int      ` + "`json:\"status,omitempty\"`" + `
	ErrorType string   ` + "`json:\"error_type,omitempty\"`" + `
	Entries   []string ` + "`json:\"entries,omitempty\"`" + `
	Err       string   ` + "`json:\"err,omitempty\"`" + `
}

var api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API")

func do(method, path string, body []byte) (int, string, http.Header, []byte, error) {
	req, _ := http.NewRequest(method, api+path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ ErrorType string ` + "`json:\"errorType\"`" + ` }
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.ErrorType, resp.Header, b, nil
}

func main() {
	if msg := os.Getenv("SCRIPT_INIT_ERROR"); msg != "" {
		fmt.Fprintln(os.Stderr, "script: cannot start")
		do("POST", "/2018-06-01/runtime/init/error", []byte(` + "`{\"errorMessage\":\"`+msg+`\",\"errorType\":\"Runtime.ImportModuleError\"}`" + `))
		os.Exit(1)
	}
	var results []result
	prev := ""
	for {
		status, _, h, body, err := do("GET", "/2018-06-01/runtime/invocation/next", nil)
		if err != nil || status != 200 {
			fmt.Fprintln(os.Stderr, "script: next:", status, err)
			os.Exit(2)
		}
		id := h.Get("Lambda-Runtime-Aws-Request-Id")
		var ev struct {
			Steps []step ` + "`json:\"steps\"`" + `
			Other string ` + "`json:\"other\"`" + `
		}
		json.Unmarshal(body, &ev)
		for _, s := range ev.Steps {
			path := strings.NewReplacer("{id}", id, "{prev}", prev, "{other}", ev.Other).Replace(s.Path)
			r := result{Step: s.Method + " " + path}
			switch {
			case s.Log != "":
				fmt.Fprintln(os.Stderr, s.Log)
				continue
			case s.SleepMS > 0:
				time.Sleep(time.Duration(s.SleepMS) * time.Millisecond)
				continue
			case s.List != "":
				r.Step = "list " + s.List
				entries, err := os.ReadDir(s.List)
				for _, e := range entries {
					r.Entries = append(r.Entries, e.Name())
				}
				if err != nil {
					r.Err = err.Error()
				}
			case s.Dial != "":
				r.Step = "dial " + s.Dial
				c, err := net.DialTimeout("tcp", s.Dial, 2*time.Second)
				if err != nil {
					r.Err = err.Error()
				} else {
					c.Close()
				}
			default:
				b := []byte(s.Body)
				if s.Size > 0 {
					b = bytes.Repeat([]byte("x"), s.Size)
				}
				var err error
				r.Status, r.ErrorType, _, _, err = do(s.Method, path, b)
				if err != nil {
					r.Err = err.Error()
				}
			}
			results = append(results, r)
		}
		answer, _ := json.Marshal(results)
		do("POST", "/2018-06-01/runtime/invocation/"+id+"/response", answer)
		fmt.Fprintln(os.Stderr, "script: answered", id)
		prev = id
	}
}
`

type scriptStep struct {
	Method  string `json:"method,omitempty"`
	Path    string `json:"path,omitempty"`
	Body    string `json:"body,omitempty"`
	Size    int    `json:"size,omitempty"`
	SleepMS int    `json:"sleep_ms,omitempty"`
	List    string `json:"list,omitempty"`
	Dial    string `json:"dial,omitempty"`
	Log     string `json:"log,omitempty"`
}

type scriptResult struct {
	Step      string   `json:"step"`
	Status    int      `json:"status"`
	ErrorType string   `json:"error_type"`
	Entries   []string `json:"entries"`
	Err       string   `json:"err"`
}

func runScript(t *testing.T, f *fixture, ref string, other string, steps ...scriptStep) (projections.Invocation, []scriptResult) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"steps": steps, "other": other})
	inv, err := f.svc.Invoke(context.Background(), ref, function.Request{Event: b})
	if err != nil {
		t.Fatal(err)
	}
	var got []scriptResult
	if inv.Status == projections.StatusCompleted {
		if err := json.Unmarshal([]byte(inv.Result), &got); err != nil {
			t.Fatalf("result %q: %v", inv.Result, err)
		}
	}
	return inv, got
}

// TestLambdaRuntimeAPI drives the Runtime API from inside real containers,
// with a runtime that misuses it on purpose.
func TestLambdaRuntimeAPI(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoSource(t, cli, scriptedRuntime, "minilambda-runner-script")
	const api = "/2018-06-01/runtime/"

	t.Run("misuse is answered as Lambda answers it", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "s", Mode: function.ModeLambda})
		inv, got := runScript(t, f, "s", "",
			scriptStep{Method: "POST", Path: api + "invocation/not-mine/response", Body: "{}"},
			scriptStep{Method: "GET", Path: api + "invocation/next"},
			scriptStep{Method: "POST", Path: api + "init/error", Body: `{"errorMessage":"late"}`},
			scriptStep{Method: "GET", Path: api + "invocation/{id}/response"},
			scriptStep{Method: "GET", Path: "/2015-03-31/functions"},
			scriptStep{Method: "GET", Path: "/functions"},
		)
		want := []struct {
			status int
			typ    string
		}{{400, "InvalidRequestID"}, {403, "InvalidStateTransition"}, {403, "InvalidStateTransition"}, {405, "MethodNotAllowed"}, {404, "NotFound"}, {404, "NotFound"}}
		if inv.Status != "COMPLETED" || len(got) != len(want) {
			t.Fatalf("%+v %+v", inv, got)
		}
		for i, w := range want {
			if got[i].Status != w.status || got[i].ErrorType != w.typ {
				t.Errorf("%s: %d %s, want %d %s", got[i].Step, got[i].Status, got[i].ErrorType, w.status, w.typ)
			}
		}
		// The first invocation is answered: answering it again is a
		// request id that is not the one in hand.
		inv, got = runScript(t, f, "s", "", scriptStep{Method: "POST", Path: api + "invocation/{prev}/response", Body: "{}"})
		if last := got[len(got)-1]; inv.Status != "COMPLETED" || last.Status != 400 || last.ErrorType != "InvalidRequestID" {
			t.Errorf("a second response: %+v", got)
		}
		// A response over 6 MiB fails its invocation, and the runtime hears
		// 413.
		inv, _ = runScript(t, f, "s", "", scriptStep{Method: "POST", Path: api + "invocation/{id}/response", Size: 7 << 20})
		if inv.Status != "FAILED" || inv.LambdaErrorType != "Function.ResponseSizeTooLarge" {
			t.Errorf("a response over 6 MiB: %+v", inv)
		}
		inv, got = runScript(t, f, "s", "")
		if last := got[len(got)-1]; inv.Status != "COMPLETED" || last.Status != 413 || last.ErrorType != "RequestEntityTooLarge" {
			t.Errorf("what the runtime heard of its response over 6 MiB: %+v", last)
		}
		// An error with a Lambda error document.
		inv, _ = runScript(t, f, "s", "", scriptStep{Method: "POST", Path: api + "invocation/{id}/error",
			Body: `{"errorMessage":"bad input","errorType":"ValueError","stackTrace":["a","b"]}`})
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorFunction || inv.LambdaErrorType != "ValueError" || inv.Error != "bad input" ||
			!strings.Contains(inv.Result, "stackTrace") {
			t.Errorf("an error: %+v", inv)
		}
	})

	// A container reaches its own Runtime API and nothing else: not another
	// container's invocations, not another function's socket, not the
	// network when it has none.
	t.Run("isolation", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		a := f.register(function.Spec{Name: "a", Mode: function.ModeLambda, Network: "none"})
		b := f.register(function.Spec{Name: "b", Mode: function.ModeLambda})
		busy := make(chan projections.Invocation, 1)
		go func() {
			inv, _ := runScript(t, f, "b", "", scriptStep{SleepMS: 2000}, scriptStep{Method: "GET", Path: "/ping"})
			busy <- inv
		}()
		f.waitRunning(b.ID)
		page, _, err := f.svc.Views().Invocations(projections.InvocationQuery{FunctionID: b.ID, Status: projections.StatusRunning})
		if err != nil || len(page) != 1 {
			t.Fatalf("b's invocation: %v %+v", err, page)
		}
		other := page[0].InvocationID
		inv, got := runScript(t, f, "a", other,
			scriptStep{Method: "POST", Path: api + "invocation/{other}/response", Body: `"hijacked"`},
			scriptStep{Method: "POST", Path: api + "invocation/{other}/error", Body: `{}`},
			scriptStep{List: "/run/minilambda/api"},
			scriptStep{Dial: "1.1.1.1:80"},
		)
		if inv.Status != "COMPLETED" || len(got) != 4 {
			t.Fatalf("a: %+v %+v", inv, got)
		}
		if got[0].Status != 400 || got[1].Status != 400 {
			t.Errorf("answering another container's invocation: %+v", got[:2])
		}
		if fmt.Sprint(got[2].Entries) != "[rapi.sock]" {
			t.Errorf("a sees %v in its socket's directory (%s)", got[2].Entries, got[2].Err)
		}
		if got[3].Err == "" {
			t.Errorf("a container with no network reached 1.1.1.1:80")
		}
		if inv := <-busy; inv.Status != "COMPLETED" || strings.Contains(inv.Result, "hijacked") {
			t.Errorf("b's invocation: %+v", inv)
		}
		if inv.FunctionID != a.ID {
			t.Errorf("a's invocation ran as %s", inv.FunctionID)
		}
	})

	t.Run("an init error fails the invocation and replaces the container", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "s", Mode: function.ModeLambda, Env: map[string]string{"SCRIPT_INIT_ERROR": "no module named handler"}})
		for i := range 2 {
			inv, _ := runScript(t, f, "s", "")
			if inv.Status != "FAILED" || inv.ErrorType != function.ErrorFunction || inv.LambdaErrorType != "Runtime.ImportModuleError" ||
				inv.Error != "no module named handler" || !strings.Contains(inv.Logs, "script: cannot start") {
				t.Errorf("call %d: %+v", i, inv)
			}
		}
		if n := len(f.eventsOfType(projections.TypeHotStarted)); n != 2 {
			t.Errorf("%d containers started for two calls that each failed to start one", n)
		}
	})

	t.Run("an entrypoint that cannot run", func(t *testing.T) {
		bad := dockertest.BuildImage(t, cli, "minilambda-runner-noentry",
			map[string][]byte{"Dockerfile": []byte("FROM " + img.Tag + "\nENTRYPOINT [\"/no/such/runtime\"]\n")}, nil)
		f := newService(t, cli, bad.Tag, runner.Options{})
		f.register(function.Spec{Name: "s", Mode: function.ModeLambda})
		inv, _ := runScript(t, f, "s", "")
		if inv.Status != "FAILED" || inv.LambdaErrorType != "Runtime.InvalidEntrypoint" || !strings.Contains(inv.Error, "/no/such/runtime") {
			t.Errorf("%+v", inv)
		}
	})

	// The runtime writes a line after each answer: it belongs to neither
	// invocation.
	t.Run("logs between invocations belong to none", func(t *testing.T) {
		f := newService(t, cli, img.Tag, runner.Options{})
		f.register(function.Spec{Name: "s", Mode: function.ModeLambda})
		first, _ := runScript(t, f, "s", "", scriptStep{Log: "during one"})
		second, _ := runScript(t, f, "s", "", scriptStep{Log: "during two"})
		if first.Logs != "during one\n" || second.Logs != "during two\n" {
			t.Errorf("logs %q and %q", first.Logs, second.Logs)
		}
	})
}

// eventsOfType returns the events of one type in the fixture's log.
func (f *fixture) eventsOfType(typ string) []eventlog.Event {
	var out []eventlog.Event
	f.log.Read(context.Background(), 0, eventlog.Filter{Type: typ}, func(e eventlog.Event) error {
		out = append(out, e)
		return nil
	})
	return out
}

// TestLambdaBashRuntime runs the tutorial's runtime on a Debian image,
// warm across calls: the handler's stderr is each invocation's logs, and
// what curl prints after each answer belongs to none.
func TestLambdaBashRuntime(t *testing.T) {
	cli := dockertest.Client(t)
	base := dockertest.DebianImage(t, cli)
	img := dockertest.BuildImage(t, cli, "minilambda-runner-bash",
		map[string][]byte{
			"Dockerfile": []byte("FROM " + base + "\nCOPY bootstrap /var/runtime/bootstrap\nCOPY function.sh /var/task/function.sh\n" +
				"ENTRYPOINT [\"/var/runtime/bootstrap\"]\n"),
			"function.sh": []byte(lambdatest.TutorialFunction),
		},
		map[string][]byte{"bootstrap": []byte(lambdatest.TutorialBootstrap)})
	f := newService(t, cli, img.Tag, runner.Options{})
	f.register(function.Spec{Name: "echo", Mode: function.ModeLambda, Handler: "function.handler"})
	var first projections.Invocation
	for i, name := range []string{"Ada", "Bo", "Cy"} {
		event := `{"name":"` + name + `"}`
		inv, err := f.svc.Invoke(context.Background(), "echo", function.Request{Event: []byte(event)})
		if err != nil {
			t.Fatal(err)
		}
		if inv.Status != "COMPLETED" || inv.Result != "Echoing request: '"+event+"'" {
			t.Fatalf("call %d: %s result %q (%s)", i, inv.Status, inv.Result, inv.Error)
		}
		// The handler's line, then whatever of curl's progress meter (the
		// last curl has no -s) it wrote on stderr before the answer went;
		// the answer curl prints after it belongs to no invocation.
		logs, meter, _ := strings.Cut(inv.Logs, "\n")
		if logs != event || strings.Contains(meter, "{") || (meter != "" && !strings.Contains(meter, "% Total")) {
			t.Errorf("call %d's logs: %q", i, inv.Logs)
		}
		if i == 0 {
			first = inv
		} else if inv.ContainerID != first.ContainerID {
			t.Errorf("call %d ran in %s, not in the warm %s", i, inv.ContainerID, first.ContainerID)
		}
	}
}
