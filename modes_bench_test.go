package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
)

var modesFor = flag.Duration("modes-for", 10*time.Second, "how long BenchmarkModes loads each function at each client count")

// loadReport is what internal/loadgen prints.
type loadReport struct {
	Invocations int           `json:"invocations"`
	PerSecond   float64       `json:"per_second"`
	P50MS       float64       `json:"p50_ms"`
	P90MS       float64       `json:"p90_ms"`
	P99MS       float64       `json:"p99_ms"`
	MaxMS       float64       `json:"max_ms"`
	Wrong       int           `json:"wrong"`
	FirstWrong  string        `json:"first_wrong"`
	cpu         time.Duration // loadgen's own
}

var (
	baselineArgs = flag.String("baseline-args", "", "flags BenchmarkModes gives the -baseline server, space-separated (with -baseline this binary: --pooled-cpus 0 measures the CPU quota)")
	fnEnv        = flag.String("fn-env", "", "NAME=VALUE,... BenchmarkModes sets in every function's env (GOMAXPROCS=1)")
)

var profileFor = flag.Duration("profile-for", 5*time.Second, "how long BenchmarkModes profiles this binary's server under the 16-client hot load (0: no profile)")

// modesFns are BenchmarkModes' functions: the hot function's program (the
// NDJSON line protocol, testdata/hot) with the default pool and with
// "concurrency": 16, a lambda function (examples/hello-lambda-go,
// aws-lambda-go) and the hot program again as a cold function, a container
// per call.
var modesFns = []string{"hot", "hot16", "lambda", "cold"}

// modeLoad is what one function did under BenchmarkModes' load: at one
// client, and, for the warm modes, at 16, with the CPU the engine (dockerd,
// containerd and the shims) and the server used per invocation at 16 (at
// one, cold), and the event log's commits meanwhile.
type modeLoad struct {
	one, many          loadReport
	engineCores        float64
	engineUS, serverUS float64
	// The rest of the machine's CPU per invocation at 16 clients: the
	// function containers' processes, the load generator, and the whole
	// machine.
	functionUS, loadUS, machineUS float64
	commitsPerSec                 float64
	eventsPerCommit               float64
	commitMS                      float64
	// fresh and steady are hot16's 4,000 calls from 16 clients on a fresh
	// server, its pool empty, and again once the pool has grown.
	fresh, steady loadReport
}

// growCalls is how many calls the fresh-server figure makes.
const growCalls = 4000

// BenchmarkModes prints, from one run, side by side: `docker run --rm -i`
// p50 of the hot function's image (the same program, one event), and for
// each of modesFns p50 and p99 at one client and 16 (cold: one client,
// back to back), throughput, the machine's CPU per invocation at 16
// clients split by process (the server, the engine, the function
// containers' processes, the load generator), and the log writer's commits
// per second, events per commit and mean commit time; and for hot16, 4,000
// calls from 16 clients on the fresh server against 4,000 once its pool has
// grown. The server runs as its own process, and the load
// comes from internal/loadgen, another process, over HTTP; every
// invocation is durably logged, and loadgen counts an answer wrong unless
// its result greets its own event and its logs are its own. With -baseline
// it measures that binary too, alternating which goes first over -pairs
// rounds, and prints the medians of both and their ratios. Last, unless
// -profile-for is 0, it profiles this binary's server under the hot
// function's 16-client load and prints the top of the profile: where the
// server's time goes. Run it with -benchtime 1x.
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
	fmt.Printf("docker run --rm -i p50: %.1f ms (20 runs of the hot function's image)\n", dockerP50)

	bins := [][2]string{{"this", binary(b)}}
	if *baseline != "" {
		bins = append(bins, [2]string{"baseline", *baseline})
	}
	args := map[string][]string{"baseline": strings.Fields(*baselineArgs)}
	got := map[string]map[string][]modeLoad{}
	for p := range *pairs {
		order := slices.Clone(bins)
		if p%2 == 1 {
			slices.Reverse(order)
		}
		for _, bin := range order {
			loads := modesServer(b, bin[1], hot.Tag, lam.Tag, loadgen, args[bin[0]]...)
			printModes(bin[0], loads)
			if got[bin[0]] == nil {
				got[bin[0]] = map[string][]modeLoad{}
			}
			for fn, l := range loads {
				got[bin[0]][fn] = append(got[bin[0]][fn], l)
			}
		}
	}
	this := map[string]modeLoad{}
	for fn, ls := range got["this"] {
		this[fn] = medianLoad(ls)
	}
	if *pairs > 1 || *baseline != "" {
		fmt.Printf("medians of %d runs:\n", *pairs)
		printModes("this", this)
	}
	for _, fn := range modesFns[:3] {
		b.ReportMetric(this[fn].many.PerSecond, fn+"-inv/s@16")
		b.ReportMetric(this[fn].one.P50MS, fn+"-p50-ms@1")
		b.ReportMetric(this[fn].engineCores, fn+"-engine-cores@16")
	}
	b.ReportMetric(this["cold"].one.P50MS/dockerP50, "cold-back-to-back-p50/docker-run")
	fmt.Printf("cold, 1 client, back to back: p50 %.2fx docker run, p99 %.2fx docker run\n",
		this["cold"].one.P50MS/dockerP50, this["cold"].one.P99MS/dockerP50)
	if *baseline != "" {
		base := map[string]modeLoad{}
		for fn, ls := range got["baseline"] {
			base[fn] = medianLoad(ls)
		}
		printModes("baseline", base)
		fmt.Printf("ratios this/baseline:\n%-8s %9s %9s %10s %12s %12s\n", "function", "p50@1", "p50@16", "inv/s@16", "engine µs", "server µs")
		for _, fn := range modesFns {
			t, o := this[fn], base[fn]
			fmt.Printf("%-8s %9.2f %9.2f %10.2f %12.2f %12.2f\n", fn, t.one.P50MS/o.one.P50MS, t.many.P50MS/o.many.P50MS,
				t.many.PerSecond/o.many.PerSecond, t.engineUS/o.engineUS, t.serverUS/o.serverUS)
		}
	}
	if *profileFor > 0 {
		profileHot(b, hot.Tag, loadgen)
	}
}

// modesServer starts bin on a fresh log, registers modesFns and loads each.
func modesServer(b *testing.B, bin, hotImage, lambdaImage, loadgen string, args ...string) map[string]modeLoad {
	s := startBinary(b, bin, filepath.Join(b.TempDir(), "events.db"), args...)
	defer s.stop(syscall.SIGTERM)
	env := map[string]string{}
	for _, kv := range strings.Split(*fnEnv, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, spec := range []map[string]any{
		{"name": "hot", "image": hotImage, "mode": "hot", "env": env},
		{"name": "hot16", "image": hotImage, "mode": "hot", "concurrency": 16, "env": env},
		{"name": "lambda", "image": lambdaImage, "mode": "lambda", "env": env},
		{"name": "cold", "image": hotImage, "env": env},
	} {
		if code := s.call("POST", "/functions", spec, nil); code != 201 {
			b.Fatalf("register %v: %d", spec, code)
		}
	}
	loads := map[string]modeLoad{}
	for _, fn := range modesFns {
		var l modeLoad
		clients := 16
		if fn == "cold" {
			// Cold calls back to back, as a user makes them: each in a
			// container of its own (a spare prestarted for it, when one is
			// ready).
			clients = 1
		} else {
			if fn == "hot16" {
				// Its pool is empty still: how a burst on a fresh server
				// fares while the pool grows, against the same calls
				// once it has.
				l.fresh = loadCount(b, s, loadgen, fn, 16, growCalls)
				l.steady = loadCount(b, s, loadgen, fn, 16, growCalls)
			}
			loadModes(b, s, loadgen, fn, 16, 2*time.Second) // the pool grown, the runtime warm
			l.one = loadModes(b, s, loadgen, fn, 1, *modesFor)
		}
		cpu0, server0, commits0 := readCPUSplit(b), procCPU(b, s.cmd.Process.Pid), scrapeCommits(b, s)
		begin := time.Now()
		r := loadModes(b, s, loadgen, fn, clients, *modesFor)
		wall := time.Since(begin)
		cpu, serverUsed := readCPUSplit(b).minus(cpu0), procCPU(b, s.cmd.Process.Pid)-server0
		commits := scrapeCommits(b, s).minus(commits0)
		n := float64(max(r.Invocations, 1))
		us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
		l.engineCores = cpu.engine.Seconds() / wall.Seconds()
		l.engineUS, l.serverUS = us(cpu.engine), us(serverUsed)
		l.functionUS, l.loadUS, l.machineUS = us(cpu.functions), us(r.cpu), us(cpu.machine)
		l.commitsPerSec = commits.count / wall.Seconds()
		if commits.count > 0 {
			l.eventsPerCommit, l.commitMS = commits.events/commits.count, 1000*commits.seconds/commits.count
		}
		if fn == "cold" {
			l.one = r
		} else {
			l.many = r
		}
		loads[fn] = l
	}
	return loads
}

func loadModes(b *testing.B, s *server, loadgen, fn string, clients int, d time.Duration) loadReport {
	return runLoadgen(b, loadgen, fn, clients, "-url", "http://"+s.addr+"/invoke/"+fn, "-clients", fmt.Sprint(clients), "-for", d.String())
}

// loadCount is loadModes for n calls, however long they take.
func loadCount(b *testing.B, s *server, loadgen, fn string, clients, n int) loadReport {
	return runLoadgen(b, loadgen, fn, clients, "-url", "http://"+s.addr+"/invoke/"+fn, "-clients", fmt.Sprint(clients), "-for", "10m", "-n", fmt.Sprint(n))
}

// runLoadgen runs loadgen with args and returns its report, with the CPU
// it used.
func runLoadgen(b *testing.B, loadgen, fn string, clients int, args ...string) loadReport {
	cmd := exec.Command(loadgen, args...)
	out, err := cmd.Output()
	var r loadReport
	if err == nil {
		err = json.Unmarshal(out, &r)
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		b.Fatalf("loadgen: %v: %s", err, out)
	}
	if r.Wrong > 0 {
		b.Errorf("%s at %d clients: %d of %d answers wrong, first: %s", fn, clients, r.Wrong, r.Invocations, r.FirstWrong)
	}
	return r
}

func printModes(name string, loads map[string]modeLoad) {
	fmt.Printf("%s:\n%-7s %8s %8s %8s %8s %9s %7s %9s %9s %9s %9s %9s %9s %7s %7s\n", name, "fn", "p50@1", "p99@1", "p50@16", "p99@16", "inv/s@16",
		"engine", "machine", "server", "engine", "function", "loadgen", "commits", "events", "commit")
	fmt.Printf("%-7s %8s %8s %8s %8s %9s %7s %9s %9s %9s %9s %9s %9s %7s %7s\n", "", "ms", "ms", "ms", "ms", "", "cores",
		"µs/inv", "µs/inv", "µs/inv", "µs/inv", "µs/inv", "/s", "/commit", "ms")
	for _, fn := range modesFns {
		l := loads[fn]
		fmt.Printf("%-7s %8.2f %8.2f %8.2f %8.2f %9.0f %7.2f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %7.2f %7.2f\n", fn, l.one.P50MS, l.one.P99MS,
			l.many.P50MS, l.many.P99MS, l.many.PerSecond, l.engineCores, l.machineUS, l.serverUS, l.engineUS, l.functionUS, l.loadUS,
			l.commitsPerSec, l.eventsPerCommit, l.commitMS)
	}
	if l := loads["hot16"]; l.steady.PerSecond > 0 {
		fmt.Printf("hot16, %d calls from 16 clients: fresh server %.0f/s (p50 %.2f ms, p99 %.2f ms, max %.0f ms), grown pool %.0f/s (p50 %.2f ms, p99 %.2f ms, max %.0f ms): fresh/grown %.2f\n",
			growCalls, l.fresh.PerSecond, l.fresh.P50MS, l.fresh.P99MS, l.fresh.MaxMS, l.steady.PerSecond, l.steady.P50MS, l.steady.P99MS, l.steady.MaxMS,
			l.fresh.PerSecond/l.steady.PerSecond)
	}
	fmt.Println("(cold: the engine, function and machine columns miss the containers removed during the run)")
}

// medianLoad takes the median of each figure on its own.
func medianLoad(ls []modeLoad) modeLoad {
	med := func(f func(modeLoad) float64) float64 { return median(ls, f) }
	var m modeLoad
	m.one.P50MS = med(func(l modeLoad) float64 { return l.one.P50MS })
	m.one.P99MS = med(func(l modeLoad) float64 { return l.one.P99MS })
	m.many.P50MS = med(func(l modeLoad) float64 { return l.many.P50MS })
	m.many.P99MS = med(func(l modeLoad) float64 { return l.many.P99MS })
	m.many.PerSecond = med(func(l modeLoad) float64 { return l.many.PerSecond })
	m.engineCores = med(func(l modeLoad) float64 { return l.engineCores })
	m.engineUS = med(func(l modeLoad) float64 { return l.engineUS })
	m.serverUS = med(func(l modeLoad) float64 { return l.serverUS })
	m.commitsPerSec = med(func(l modeLoad) float64 { return l.commitsPerSec })
	m.eventsPerCommit = med(func(l modeLoad) float64 { return l.eventsPerCommit })
	m.commitMS = med(func(l modeLoad) float64 { return l.commitMS })
	m.functionUS = med(func(l modeLoad) float64 { return l.functionUS })
	m.loadUS = med(func(l modeLoad) float64 { return l.loadUS })
	m.machineUS = med(func(l modeLoad) float64 { return l.machineUS })
	m.fresh.PerSecond = med(func(l modeLoad) float64 { return l.fresh.PerSecond })
	m.fresh.P50MS = med(func(l modeLoad) float64 { return l.fresh.P50MS })
	m.fresh.P99MS = med(func(l modeLoad) float64 { return l.fresh.P99MS })
	m.fresh.MaxMS = med(func(l modeLoad) float64 { return l.fresh.MaxMS })
	m.steady.PerSecond = med(func(l modeLoad) float64 { return l.steady.PerSecond })
	m.steady.P50MS = med(func(l modeLoad) float64 { return l.steady.P50MS })
	m.steady.P99MS = med(func(l modeLoad) float64 { return l.steady.P99MS })
	m.steady.MaxMS = med(func(l modeLoad) float64 { return l.steady.MaxMS })
	return m
}

// commitStats are the event log's commit histograms, as /metrics has them.
type commitStats struct{ count, events, seconds float64 }

func (c commitStats) minus(o commitStats) commitStats {
	return commitStats{c.count - o.count, c.events - o.events, c.seconds - o.seconds}
}

// scrapeCommits reads the log writer's commit count, events and time from
// the server's /metrics.
func scrapeCommits(b *testing.B, s *server) commitStats {
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var c commitStats
	for _, line := range strings.Split(string(body), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch name {
		case "minilambda_eventlog_commit_seconds_count":
			c.count = f
		case "minilambda_eventlog_commit_seconds_sum":
			c.seconds = f
		case "minilambda_eventlog_commit_events_sum":
			c.events = f
		}
	}
	return c
}

// profileHot takes a CPU profile of this binary's server (--pprof) under
// the hot function's 16-client load, and prints its top: where the
// server's time goes.
func profileHot(b *testing.B, hotImage, loadgen string) {
	s := startServer(b, filepath.Join(b.TempDir(), "events.db"), "--pprof")
	defer s.stop(syscall.SIGTERM)
	if code := s.call("POST", "/functions", map[string]any{"name": "hot", "image": hotImage, "mode": "hot"}, nil); code != 201 {
		b.Fatalf("register: %d", code)
	}
	loadModes(b, s, loadgen, "hot", 16, 2*time.Second)
	prof := filepath.Join(b.TempDir(), "cpu.pprof")
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.addr, int(profileFor.Seconds())))
		if err == nil {
			defer resp.Body.Close()
			var f *os.File
			if f, err = os.Create(prof); err == nil {
				_, err = io.Copy(f, resp.Body)
				f.Close()
			}
		}
		done <- err
	}()
	loadModes(b, s, loadgen, "hot", 16, *profileFor+time.Second)
	if err := <-done; err != nil {
		b.Fatalf("profile: %v", err)
	}
	for _, view := range []string{"-flat", "-cum"} {
		out, err := exec.Command("go", "tool", "pprof", "-top", view, "-nodecount", "25", binary(b), prof).CombinedOutput()
		if err != nil {
			b.Fatalf("go tool pprof: %v\n%s", err, out)
		}
		fmt.Printf("the server's CPU profile under the hot function's 16-client load (top 25, %s):\n%s", view[1:], out)
	}
}

// cpuSplit is the CPU time used so far by the engine (dockerd, containerd
// and every containerd shim), by the processes of function containers
// (every process below a shim), and by the whole machine (/proc/stat), from
// /proc. A process that left meanwhile counts for nothing: no container
// starts or stops while the pools are warm, so the split is for the warm
// modes.
type cpuSplit struct{ engine, functions, machine time.Duration }

func (c cpuSplit) minus(o cpuSplit) cpuSplit {
	return cpuSplit{c.engine - o.engine, c.functions - o.functions, c.machine - o.machine}
}

func readCPUSplit(b *testing.B) cpuSplit {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	type proc struct {
		comm string
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[end+2:]))
		ppid, _ := strconv.Atoi(f[1])
		procs[pid] = proc{comm: string(stat[open+1 : end]), ppid: ppid, cpu: statCPU(stat)}
	}
	isEngine := func(comm string) bool {
		return comm == "dockerd" || comm == "containerd" || strings.HasPrefix(comm, "containerd-shim")
	}
	var c cpuSplit
	for _, p := range procs {
		if isEngine(p.comm) {
			c.engine += p.cpu
			continue
		}
		for up, seen := p.ppid, 0; up > 1 && seen < 64; seen++ {
			q, ok := procs[up]
			if !ok {
				break
			}
			if strings.HasPrefix(q.comm, "containerd-shim") {
				c.functions += p.cpu
				break
			}
			up = q.ppid
		}
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	// cpu user nice system idle iowait irq softirq steal: all but idle and
	// iowait are work.
	f := strings.Fields(line)
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		c.machine += time.Duration(n) * time.Second / 100
	}
	return c
}
