package runner_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner"
)

var (
	hotFor   = flag.Duration("hot-for", 3*time.Second, "how long BenchmarkWarm measures hot throughput")
	coldRuns = flag.Int("cold-runs", 15, "docker run and cold invocations BenchmarkWarm times; 0 measures hot only")
	burst    = flag.Int("burst", 20, "cold invocations BenchmarkWarm sends back to back")
)

// BenchmarkWarm prints, from one run on the real engine: `docker run --rm
// -i` p50, cold invocation p50 (alternating with docker run), p50 and p90
// of -burst cold invocations back to back, hot p50 and p99, hot throughput with 16 concurrent clients, and
// the ratios. Every invocation goes through the runner, so each is queued,
// started and ended in the fsynced log before it returns. Run it with
// -benchtime 1x.
func BenchmarkWarm(b *testing.B) {
	// The collector as `serve` sets it (tuneGC in main.go).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(2 << 30))
	cli := dockertest.Client(b)
	cold := dockertest.BuildGoImage(b, cli, "../testdata/fn", "minilambda-bench-cold")
	hot := dockertest.BuildGoImage(b, cli, "../testdata/hot", "minilambda-bench-hot")
	var commits, committed, committing atomic.Int64
	fx := newServiceLog(b, cli, "", runner.Options{MaxInFlight: 64}, eventlog.Options{
		OnCommit: func(c eventlog.CommitStats) {
			commits.Add(1)
			committing.Add(int64(c.Duration))
			committed.Add(int64(c.Events))
		},
	}, "")
	f := fx.svc
	ctx := context.Background()
	for _, spec := range []function.Spec{
		{Name: "cold", Image: cold.Tag},
		{Name: "hot", Image: hot.Tag, Mode: "hot", Concurrency: 16},
	} {
		if _, err := fx.ctl.Register(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
	var badLogs atomic.Int64
	event := json.RawMessage(`{"name": "bench"}`)
	invoke := func(ref string) time.Duration {
		start := time.Now()
		inv, err := f.Invoke(ctx, ref, function.Request{Event: event})
		if err != nil || inv.Status != "COMPLETED" {
			b.Fatalf("%s: %v %+v", ref, err, inv)
		}
		// Speed must not cost the logs: each hot call gets its own.
		if ref == "hot" && inv.Logs != "handling \"bench\"\n" && badLogs.Add(1) <= 3 {
			b.Errorf("hot invocation %s got logs %q", inv.InvocationID, inv.Logs)
		}
		return time.Since(start)
	}
	const hotRuns = 1000
	var dockerRun, coldRun []time.Duration
	key, value := dockertest.UniqueLabel(b)
	for range *coldRuns {
		dockerRun = append(dockerRun, dockertest.DockerRun(b, cold.Tag, event, key, value))
		coldRun = append(coldRun, invoke("cold"))
	}
	// Cold calls back to back, with no time between them for a spare to be
	// prepared.
	var coldBurst []time.Duration
	for range *burst {
		coldBurst = append(coldBurst, invoke("cold"))
	}
	invoke("hot") // start the first container
	var hotRun []time.Duration
	for range hotRuns {
		hotRun = append(hotRun, invoke("hot"))
	}
	// Throughput: 16 clients for -hot-for, once the pool has grown to 16.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				invoke("hot")
			}
		}()
	}
	wg.Wait()
	var done atomic.Int64
	commits0, committed0, committing0 := commits.Load(), committed.Load(), committing.Load()
	stop := time.Now().Add(*hotFor)
	begin := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				invoke("hot")
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin).Seconds()
	throughput := float64(done.Load()) / elapsed
	commitRate := float64(commits.Load()-commits0) / elapsed
	perCommit := float64(committed.Load()-committed0) / float64(commits.Load()-commits0)
	writerBusy := time.Duration(committing.Load()-committing0).Seconds() / elapsed

	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	hp50, hp99 := pct(hotRun, .5), pct(hotRun, .99)
	b.ReportMetric(hp50, "hot-p50-ms")
	b.ReportMetric(hp99, "hot-p99-ms")
	b.ReportMetric(throughput, "hot-inv/s@16")
	b.ReportMetric(commitRate, "commits/s@16")
	b.ReportMetric(perCommit, "events/commit@16")
	b.ReportMetric(writerBusy*100, "writer-busy-%@16")
	hotLine := fmt.Sprintf("hot p50 %.2f ms p99 %.2f ms | hot %.0f inv/s at 16 clients (%.0f commits/s, %.1f events each, log writer busy %.0f%%; peak RSS %s)",
		hp50, hp99, throughput, commitRate, perCommit, writerBusy*100, peakRSS())
	if *coldRuns == 0 {
		fmt.Println(hotLine)
		return
	}
	dr, cr, cb, cb90 := pct(dockerRun, .5), pct(coldRun, .5), pct(coldBurst, .5), pct(coldBurst, .9)
	b.ReportMetric(dr, "docker-run-p50-ms")
	b.ReportMetric(cr, "cold-p50-ms")
	b.ReportMetric(cr/dr, "cold/docker-run")
	b.ReportMetric(cb, "cold-back-to-back-p50-ms")
	b.ReportMetric(cb90, "cold-back-to-back-p90-ms")
	b.ReportMetric(cb90/dr, "back-to-back-p90/docker-run")
	b.ReportMetric(dr/hp50, "docker-run/hot-p50")
	fmt.Printf("docker run p50 %.1f ms | cold p50 %.1f ms (%.2fx docker run), %d back to back p50 %.1f ms (%.2fx) p90 %.1f ms (%.2fx) | %s (docker run / hot p50 = %.0fx)\n",
		dr, cr, cr/dr, len(coldBurst), cb, cb/dr, cb90, cb90/dr, hotLine, dr/hp50)
}

// peakRSS is the process's resident high-water mark, as Linux reports it.
func peakRSS() string {
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.Join(strings.Fields(rest), " ")
		}
	}
	return "unknown"
}
