package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

var (
	httpFor  = flag.Duration("http-for", 10*time.Second, "how long BenchmarkServeHot loads each server")
	clients  = flag.Int("clients", 16, "concurrent HTTP clients of BenchmarkServeHot")
	baseline = flag.String("baseline", "", "another minilambda binary that BenchmarkServeHot measures too, alternating with this one")
	pairs    = flag.Int("pairs", 1, "how many times BenchmarkServeHot measures each binary")
)

// load is what one server did under BenchmarkServeHot's load.
type load struct {
	perSecond      float64
	p50, p99       time.Duration
	cpuPerInvoke   time.Duration // the server process's user and system time
	invocations    int
	wrongResponses int
}

// BenchmarkServeHot measures hot invocations as users see them: the binary
// serving as its own process, -clients HTTP clients with keep-alive in
// this one, for -http-for. Each line it prints is one server: invocations
// per second, latency p50 and p99, and the server's CPU time per
// invocation. With -baseline it measures that binary as well, alternating
// which goes first over -pairs rounds, and prints the medians of both and
// their ratio. Run it with -benchtime 1x.
func BenchmarkServeHot(b *testing.B) {
	cli := dockertest.Client(b)
	img := dockertest.BuildGoImage(b, cli, "testdata/hot", "minilambda-bench-serve-hot")
	bins := [][2]string{{"this", binary(b)}}
	if *baseline != "" {
		bins = append(bins, [2]string{"baseline", *baseline})
	}
	got := map[string][]load{}
	for p := range *pairs {
		order := slices.Clone(bins)
		if p%2 == 1 {
			slices.Reverse(order)
		}
		for _, bin := range order {
			l := serveHot(b, bin[1], img.Tag)
			got[bin[0]] = append(got[bin[0]], l)
			fmt.Printf("%-8s %6.0f inv/s  p50 %5.2f ms  p99 %6.2f ms  server CPU %4.0f µs/inv\n", bin[0], l.perSecond,
				ms(l.p50), ms(l.p99), float64(l.cpuPerInvoke.Microseconds()))
		}
	}
	this := medians(got["this"])
	b.ReportMetric(this.perSecond, "inv/s")
	b.ReportMetric(ms(this.p50), "p50-ms")
	b.ReportMetric(ms(this.p99), "p99-ms")
	b.ReportMetric(float64(this.cpuPerInvoke.Microseconds()), "server-cpu-µs/inv")
	if *baseline == "" {
		return
	}
	base := medians(got["baseline"])
	fmt.Printf("medians of %d: this %.0f inv/s, %.0f µs CPU/inv; baseline %.0f inv/s, %.0f µs CPU/inv; ratio this/baseline: throughput %.3f, CPU per invocation %.3f\n",
		*pairs, this.perSecond, float64(this.cpuPerInvoke.Microseconds()), base.perSecond, float64(base.cpuPerInvoke.Microseconds()),
		this.perSecond/base.perSecond, float64(this.cpuPerInvoke)/float64(base.cpuPerInvoke))
	b.ReportMetric(this.perSecond/base.perSecond, "throughput-ratio")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// median is the median of f over xs.
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// medians takes the median of each figure on its own.
func medians(ls []load) load {
	med := func(f func(load) float64) float64 { return median(ls, f) }
	return load{
		perSecond:    med(func(l load) float64 { return l.perSecond }),
		p50:          time.Duration(med(func(l load) float64 { return float64(l.p50) })),
		p99:          time.Duration(med(func(l load) float64 { return float64(l.p99) })),
		cpuPerInvoke: time.Duration(med(func(l load) float64 { return float64(l.cpuPerInvoke) })),
	}
}

// serveHot starts bin on a fresh log, registers a hot function and loads
// it, warming its pool first.
func serveHot(b *testing.B, bin, image string) load {
	db := filepath.Join(b.TempDir(), "events.db")
	s := startBinary(b, bin, db)
	defer func() {
		if err := s.stop(syscall.SIGTERM); err != nil {
			b.Errorf("%s: exit after SIGTERM: %v", bin, err)
		}
	}()
	spec := map[string]any{"name": "hot", "image": image, "mode": "hot", "concurrency": *clients}
	if code := s.call("POST", "/functions", spec, nil); code != 201 {
		b.Fatalf("register: %d", code)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	hammer(b, s, client, 2*time.Second)
	cpu0 := procCPU(b, s.cmd.Process.Pid)
	l := hammer(b, s, client, *httpFor)
	l.cpuPerInvoke = (procCPU(b, s.cmd.Process.Pid) - cpu0) / time.Duration(max(l.invocations, 1))
	if l.wrongResponses > 0 {
		b.Errorf("%s: %d of %d invocations answered wrong", bin, l.wrongResponses, l.invocations)
	}
	return l
}

// hammer sends hot invocations from -clients clients for d.
func hammer(b *testing.B, s *server, client *http.Client, d time.Duration) load {
	var mu sync.Mutex
	var lat []time.Duration
	wrong := 0
	stop := time.Now().Add(d)
	begin := time.Now()
	var wg sync.WaitGroup
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "c" + strconv.Itoa(c)
			body := []byte(`{"event": {"name": "` + name + `"}}`)
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				t := time.Now()
				resp, err := client.Post("http://"+s.addr+"/invoke/hot", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				var inv projections.Invocation
				err = json.NewDecoder(resp.Body).Decode(&inv)
				resp.Body.Close()
				mine = append(mine, time.Since(t))
				if err != nil || resp.StatusCode != 200 || !strings.Contains(inv.Result, "Hello, "+name+"!") || inv.Logs != fmt.Sprintf("handling %q\n", name) {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			wrong += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no invocation answered")
	}
	return load{
		perSecond:      float64(len(lat)) / elapsed.Seconds(),
		p50:            lat[len(lat)/2],
		p99:            lat[len(lat)*99/100],
		invocations:    len(lat),
		wrongResponses: wrong,
	}
}

// procCPU is the user and system time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	return statCPU(stat)
}

// statCPU reads the user and system time from a /proc/PID/stat line.
func statCPU(stat []byte) time.Duration {
	// The command name, in parentheses, may hold spaces: count fields after it.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ, fixed at 100 on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

var settle = flag.Duration("settle", time.Minute, "how long BenchmarkBigEvents waits after the load before it reads the server's resident memory")

// BenchmarkBigEvents measures the server's resident memory under events of
// the API's largest size, 6 MiB, as its own process: at rest, at the peak
// of 64 concurrent sync invocations, at the peak of 150 concurrent async
// enqueues (and their runs), and -settle after the load. With -baseline it
// measures that binary the same way. Run it with -benchtime 1x.
func BenchmarkBigEvents(b *testing.B) {
	cli := dockertest.Client(b)
	img := dockertest.BuildGoImage(b, cli, "testdata/fn", "minilambda-bench-big")
	bins := [][2]string{{"this", binary(b)}}
	if *baseline != "" {
		bins = append(bins, [2]string{"baseline", *baseline})
	}
	for _, bin := range bins {
		bigEvents(b, bin[0], bin[1], img.Tag)
	}
}

func bigEvents(b *testing.B, label, bin, image string) {
	db := filepath.Join(b.TempDir(), "events.db")
	s := startBinary(b, bin, db)
	if code := s.call("POST", "/functions", map[string]any{"name": "big", "image": image, "memory_mb": 64}, nil); code != 201 {
		b.Fatalf("register: %d", code)
	}
	pid := s.cmd.Process.Pid
	pad := strings.Repeat("x", 6<<20-200)
	body := []byte(`{"event": {"name": "big", "pad": "` + pad + `"}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 150}}
	post := func(path string) int {
		resp, err := client.Post("http://"+s.addr+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Error(err)
			return 0
		}
		defer resp.Body.Close()
		var inv projections.Invocation
		json.NewDecoder(resp.Body).Decode(&inv)
		return resp.StatusCode
	}
	burst := func(n int, path string) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code := post(path)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return codes
	}
	time.Sleep(time.Second)
	idle := procMem(b, pid, "VmRSS")
	resetPeak(b, pid)
	anon := sampleMax(b, pid, "RssAnon")
	syncCodes := burst(64, "/invoke/big")
	syncPeak, syncAnon := procMem(b, pid, "VmHWM"), anon()
	resetPeak(b, pid)
	anon = sampleMax(b, pid, "RssAnon")
	asyncCodes := burst(150, "/invoke/big/async")
	// Wait for the queue to run dry.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var p page
		s.call("GET", "/invocations?status=PENDING&limit=1", nil, &p)
		var r page
		s.call("GET", "/invocations?status=RUNNING&limit=1", nil, &r)
		if len(p.Invocations)+len(r.Invocations) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	asyncPeak, asyncAnon := procMem(b, pid, "VmHWM"), anon()
	time.Sleep(*settle)
	after, afterAnon := procMem(b, pid, "VmRSS"), procMem(b, pid, "RssAnon")
	fmt.Printf("%-8s RSS at rest %s; 64 sync calls of 6 MiB (answers %v): peak %s (anonymous %s); 150 async enqueues of 6 MiB and their runs (answers %v): peak %s (anonymous %s); %v after: %s (anonymous %s)\n",
		label, mib(idle), syncCodes, mib(syncPeak), mib(syncAnon), asyncCodes, mib(asyncPeak), mib(asyncAnon), *settle, mib(after), mib(afterAnon))
	if err := s.stop(syscall.SIGTERM); err != nil {
		b.Errorf("%s: exit after SIGTERM: %v", label, err)
	}
	assertAudit(b, db)
	if label == "this" {
		b.ReportMetric(float64(syncPeak)/(1<<20), "sync-peak-MiB")
		b.ReportMetric(float64(asyncPeak)/(1<<20), "async-peak-MiB")
		b.ReportMetric(float64(after)/(1<<20), "after-MiB")
	}
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// procMem reads a memory figure of process pid from /proc, in bytes.
func procMem(b *testing.B, pid int, field string) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// resetPeak starts VmHWM of process pid over from its current RSS.
func resetPeak(b *testing.B, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
}

// sampleMax samples a memory figure of process pid every 20 ms until the
// returned function is called, which says the largest value seen.
func sampleMax(b *testing.B, pid int, field string) func() int64 {
	stop := make(chan struct{})
	done := make(chan int64)
	go func() {
		var peak int64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := procMem(b, pid, field); v > peak {
				peak = v
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		return <-done
	}
}
