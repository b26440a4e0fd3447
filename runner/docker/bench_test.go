package docker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

// BenchmarkColdVsDockerRun times, alternating in one run, `docker run
// --rm -i` of an image and a cold Run of the same image and input, and
// reports both medians, their ratio and where Run's time goes.
func BenchmarkColdVsDockerRun(b *testing.B) {
	cli := dockertest.Client(b)
	img := dockertest.BuildGoImage(b, cli, "testdata/echo", "minilambda-bench-echo")
	d, err := docker.New(cli, nil)
	if err != nil {
		b.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(b)
	input := []byte(`{"name": "bench"}`)
	var docker, cold []time.Duration
	var phases engine.Timings
	b.ResetTimer()
	for i := range b.N {
		docker = append(docker, dockertest.DockerRun(b, img.Tag, input, key, value))

		start := time.Now()
		res, err := d.Run(context.Background(), engine.Spec{
			FunctionID: "bench", InvocationID: "bench-" + value + "-" + time.Now().Format("150405.000000"), Image: img.Tag,
			Labels: map[string]string{key: value},
		}, input, 0, nil)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run %d: %v %+v", i, err, res)
		}
		cold = append(cold, time.Since(start))
		t := res.Timings
		phases.Image += t.Image
		phases.Create += t.Create
		phases.Attach += t.Attach
		phases.Start += t.Start
		phases.Wait += t.Wait
		phases.Inspect += t.Inspect
		phases.Remove += t.Remove
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(median(docker), "docker-run-p50-ms")
	b.ReportMetric(median(cold), "cold-p50-ms")
	b.ReportMetric(median(cold)/median(docker), "cold/docker-run")
	b.ReportMetric(ms(phases.Create), "create-ms")
	b.ReportMetric(ms(phases.Start), "start-ms")
	b.ReportMetric(ms(phases.Wait), "wait-ms")
	b.ReportMetric(ms(phases.Remove), "remove-ms")
	b.ReportMetric(ms(phases.Image+phases.Attach+phases.Inspect), "other-ms")
}
