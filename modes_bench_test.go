package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
)

var modesFor = flag.Duration("modes-for", 10*time.Second, "how long BenchmarkModes loads each function at each client count")

// loadReport is what internal/loadgen prints.
type loadReport struct {
	Invocations int     `json:"invocations"`
	PerSecond   float64 `json:"per_second"`
	P50MS       float64 `json:"p50_ms"`
	P90MS       float64 `json:"p90_ms"`
	P99MS       float64 `json:"p99_ms"`
	Wrong       int     `json:"wrong"`
	FirstWrong  string  `json:"first_wrong"`
}

// BenchmarkModes prints, from one run, side by side: `docker run --rm -i`
// p50 of the hot function's image (the same program, one event), and for
// a hot function (the NDJSON line protocol, testdata/hot) and a lambda
// function (examples/hello-lambda-go, aws-lambda-go) registered with no
// settings, p50, p99 and throughput at 1 and 16 clients. The server runs as
// its own process, and the load comes from internal/loadgen, another
// process, over HTTP; every invocation is durably logged, and loadgen
// counts an answer wrong unless its result greets its own event and its
// logs are its own. During each 16-client run it reads the CPU time of
// dockerd, containerd and the containerd shims from /proc, and of the
// server, per invocation. Last, a cold function (the hot function's image,
// a container per call) called back to back by one client: p50 and p90
// against docker run. Run it with -benchtime 1x.
func BenchmarkModes(b *testing.B) {
	cli := dockertest.Client(b)
	hot := dockertest.BuildGoImage(b, cli, "testdata/hot", "minilambda-bench-modes-hot")
	lam := dockertest.BuildSampleAs(b, cli, "examples/hello-lambda-go", "minilambda-bench-modes-lambda", "bootstrap")
	loadgen := filepath.Join(b.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "./internal/loadgen").CombinedOutput(); err != nil {
		b.Fatalf("go build loadgen: %v\n%s", err, out)
	}
	key, value := dockertest.UniqueLabel(b)
	var dockerRun []time.Duration
	for range 20 {
		dockerRun = append(dockerRun, dockertest.DockerRun(b, hot.Tag, []byte(`{"name": "bench"}`+"\n"), key, value))
	}
	slices.Sort(dockerRun)
	dockerP50 := float64(dockerRun[len(dockerRun)/2].Microseconds()) / 1000

	s := startServer(b, filepath.Join(b.TempDir(), "events.db"))
	defer s.stop(15)
	for _, spec := range []map[string]any{
		{"name": "hot", "image": hot.Tag, "mode": "hot"},
		{"name": "lambda", "image": lam.Tag, "mode": "lambda"},
		{"name": "cold", "image": hot.Tag}, // the same program, a container per call
	} {
		if code := s.call("POST", "/functions", spec, nil); code != 201 {
			b.Fatalf("register %v: %d", spec, code)
		}
	}
	run := func(fn string, clients int, d time.Duration) loadReport {
		out, err := exec.Command(loadgen, "-url", "http://"+s.addr+"/invoke/"+fn, "-clients", fmt.Sprint(clients), "-for", d.String()).Output()
		var r loadReport
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil {
			b.Fatalf("loadgen: %v: %s", err, out)
		}
		if r.Wrong > 0 {
			b.Errorf("%s at %d clients: %d of %d answers wrong, first: %s", fn, clients, r.Wrong, r.Invocations, r.FirstWrong)
		}
		return r
	}
	fmt.Printf("docker run --rm -i p50: %.1f ms (20 runs of the hot function's image)\n", dockerP50)
	fmt.Printf("%-7s %9s %9s %10s %9s %9s %10s %12s %14s\n", "mode", "p50@1", "p99@1", "inv/s@1", "p50@16", "p99@16", "inv/s@16", "engine cores", "server µs/inv")
	for _, fn := range []string{"hot", "lambda"} {
		run(fn, 16, 2*time.Second) // the pool grown, the runtime warm
		one := run(fn, 1, *modesFor)
		engine0, server0 := engineCPU(b), procCPU(b, s.cmd.Process.Pid)
		begin := time.Now()
		many := run(fn, 16, *modesFor)
		wall := time.Since(begin)
		engineCores := (engineCPU(b) - engine0).Seconds() / wall.Seconds()
		serverPer := (procCPU(b, s.cmd.Process.Pid) - server0) / time.Duration(max(many.Invocations, 1))
		fmt.Printf("%-7s %7.2fms %7.2fms %10.0f %7.2fms %7.2fms %10.0f %12.2f %14.0f\n", fn, one.P50MS, one.P99MS, one.PerSecond,
			many.P50MS, many.P99MS, many.PerSecond, engineCores, float64(serverPer.Microseconds()))
		b.ReportMetric(many.PerSecond, fn+"-inv/s@16")
		b.ReportMetric(one.P50MS, fn+"-p50-ms@1")
		b.ReportMetric(engineCores, fn+"-engine-cores@16")
		b.ReportMetric(dockerP50/one.P50MS, fn+"-docker-run/p50")
	}
	// Cold calls back to back, as a user makes them: one client over HTTP,
	// each call in a container of its own (a spare prestarted for it, when
	// one is ready), against docker run of the same image.
	cold := run("cold", 1, *modesFor)
	fmt.Printf("cold, 1 client, back to back: %d calls, p50 %.1f ms (%.2fx docker run), p90 %.1f ms (%.2fx docker run)\n",
		cold.Invocations, cold.P50MS, cold.P50MS/dockerP50, cold.P90MS, cold.P90MS/dockerP50)
	b.ReportMetric(cold.P50MS/dockerP50, "cold-back-to-back-p50/docker-run")
	b.ReportMetric(cold.P90MS/dockerP50, "cold-back-to-back-p90/docker-run")
}

// engineCPU is the CPU time dockerd, containerd and every containerd shim
// have used so far, from /proc.
func engineCPU(b *testing.B) time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, e := range entries {
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		switch name := strings.TrimSpace(string(comm)); {
		case name == "dockerd", name == "containerd", strings.HasPrefix(name, "containerd-shim"):
			// A process that left meanwhile counts for nothing: no container
			// starts or stops while the pools are warm.
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
				total += statCPU(stat)
			}
		}
	}
	return total
}
