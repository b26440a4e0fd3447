//go:build swarm

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// BenchmarkSwarm measures the Swarm engine on the cluster .ci/swarm runs
// (one manager, two workers; functions kept on the workers), as a user
// sees it: the server its own process, the load from another
// (internal/loadgen) over HTTP.
//
//   - cold: calls back to back, p50, against `docker service create` of the
//     same image, by the digest the server pushed, as a replicated job on
//     a worker, timed from the create to the task's completion through the
//     manager's API, as the server itself would see it;
//   - hot and lambda: p50 at 1 client, and p50 and inv/s at 16 clients,
//     their pools spread over both workers;
//   - first call: a new lambda function's first invocation, from its
//     container's service create, placement, start and the runtime's first
//     request for the event, to the answer.
//
// Run it with: eval "$(bash .ci/swarm up)"; export SWARM_MANAGER
// SWARM_REGISTRY SWARM_WORKERS SWARM_NETWORK; go test -tags swarm -run '^$'
// -bench Swarm -benchtime 1x -timeout 30m . -args -modes-for 10s
func BenchmarkSwarm(b *testing.B) {
	c := cluster(b)
	hot := dockertest.BuildGoImage(b, c.cli, "testdata/hot", "swarm-bench-hot")
	lam := dockertest.BuildSampleAs(b, c.cli, "examples/hello-lambda-go", "swarm-bench-lambda", "bootstrap")
	loadgen := filepath.Join(b.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "./internal/loadgen").CombinedOutput(); err != nil {
		b.Fatalf("go build loadgen: %v\n%s", err, out)
	}
	db := filepath.Join(b.TempDir(), "events.db")
	s := startSwarmServerArgs(b, c, db, freePort(b), []string{"--swarm-constraints", "node.role==worker"}, hot, lam)
	for _, f := range []map[string]any{
		{"name": "cold", "image": hot.Tag},
		{"name": "hot", "image": hot.Tag, "mode": "hot"},
		{"name": "lambda", "image": lam.Tag, "mode": "lambda"},
	} {
		if code := s.call("POST", "/functions", f, nil); code != 201 {
			b.Fatalf("register %v: %d", f["name"], code)
		}
	}
	waitAgents(b, s, "cold")

	cold := loadModes(b, s, loadgen, "cold", 1, *modesFor)
	service := serviceCreateP50(b, c, hot.ID, instanceID(db), 10)

	loads := map[string][2]loadReport{}
	for _, fn := range []string{"hot", "lambda"} {
		loadModes(b, s, loadgen, fn, 16, 3*time.Second) // the pool grown, the runtimes warm
		loads[fn] = [2]loadReport{loadModes(b, s, loadgen, fn, 1, *modesFor), loadModes(b, s, loadgen, fn, 16, *modesFor)}
	}

	var first, init []float64
	for i := range 5 {
		name := fmt.Sprintf("first-%d", i)
		if code := s.call("POST", "/functions", map[string]any{"name": name, "image": lam.Tag, "mode": "lambda"}, nil); code != 201 {
			b.Fatalf("register %s: %d", name, code)
		}
		var inv projections.Invocation
		begin := time.Now()
		if code := s.call("POST", "/invoke/"+name, map[string]any{"event": map[string]string{"name": name}}, &inv); code != 200 || inv.Status != "COMPLETED" {
			b.Fatalf("the first call of %s: %d %s %s", name, code, inv.Status, inv.Error)
		}
		first = append(first, float64(time.Since(begin).Microseconds())/1000)
		init = append(init, float64(inv.InitDuration))
	}
	slices.Sort(first)
	slices.Sort(init)

	fmt.Printf("Swarm, 2 workers:\n%-34s %10s %10s %10s\n", "", "p50 ms", "p99 ms", "inv/s")
	fmt.Printf("%-34s %10.1f %10.1f %10.2f\n", "cold, 1 client, back to back", cold.P50MS, cold.P99MS, cold.PerSecond)
	fmt.Printf("%-34s %10.1f %10s %10s\n", "docker service create (job)", service, "", "")
	for _, fn := range []string{"hot", "lambda"} {
		fmt.Printf("%-34s %10.1f %10.1f %10.1f\n", fn+", 1 client", loads[fn][0].P50MS, loads[fn][0].P99MS, loads[fn][0].PerSecond)
		fmt.Printf("%-34s %10.1f %10.1f %10.1f\n", fn+", 16 clients", loads[fn][1].P50MS, loads[fn][1].P99MS, loads[fn][1].PerSecond)
	}
	fmt.Printf("%-34s %10.1f %10s %10s   (its init: p50 %.0f ms)\n", "a new lambda function's first call", first[len(first)/2], "", "", init[len(init)/2])
	fmt.Printf("cold p50 / docker service create p50: %.2f\n", cold.P50MS/service)
	b.ReportMetric(cold.P50MS, "cold-p50-ms")
	b.ReportMetric(service, "service-create-p50-ms")
	b.ReportMetric(cold.P50MS/service, "cold/service-create")
	for _, fn := range []string{"hot", "lambda"} {
		b.ReportMetric(loads[fn][0].P50MS, fn+"-p50-ms@1")
		b.ReportMetric(loads[fn][1].P50MS, fn+"-p50-ms@16")
		b.ReportMetric(loads[fn][1].PerSecond, fn+"-inv/s@16")
	}
	b.ReportMetric(first[len(first)/2], "first-call-p50-ms")
}

// serviceCreateP50 times n replicated jobs of the image id, which the
// server pushed to the cluster's registry, each from its create through
// the manager's API to its one task's completion on a worker, and returns
// the median in milliseconds. The services carry the server's label, so
// that the test's cleanup removes any left.
func serviceCreateP50(b *testing.B, c swarmCluster, id, instance string, n int) float64 {
	ctx := context.Background()
	img, err := c.cli.ImageInspect(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	ref := ""
	for _, d := range img.RepoDigests {
		if strings.HasPrefix(d, c.registry+"/") {
			ref = d
		}
	}
	if ref == "" {
		b.Fatalf("the image %s was not pushed to %s: %v", id, c.registry, img.RepoDigests)
	}
	one := uint64(1)
	var took []float64
	for i := range n {
		spec := swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: fmt.Sprintf("bench-job-%s-%d", instance, i), Labels: map[string]string{runner.LabelInstance: instance}},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{Image: ref, Labels: map[string]string{runner.LabelInstance: instance}},
				Placement:     &swarm.Placement{Constraints: []string{"node.role==worker"}},
				RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			},
			Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
		}
		begin := time.Now()
		created, err := c.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for deadline := begin.Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
			tasks, err := c.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", created.ID))})
			if err != nil {
				b.Fatal(err)
			}
			if len(tasks) > 0 && (tasks[0].Status.State == swarm.TaskStateComplete || tasks[0].Status.State == swarm.TaskStateFailed) {
				break
			}
			if len(tasks) > 0 && tasks[0].Status.State == swarm.TaskStateRejected {
				b.Fatalf("the job's task: %s %s", tasks[0].Status.State, tasks[0].Status.Err)
			}
			if time.Now().After(deadline) {
				b.Fatalf("the job did not complete in two minutes")
			}
		}
		took = append(took, float64(time.Since(begin).Microseconds())/1000)
		c.cli.ServiceRemove(ctx, created.ID)
	}
	slices.Sort(took)
	return took[len(took)/2]
}
