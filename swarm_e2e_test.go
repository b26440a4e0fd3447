//go:build swarm

// The Swarm tests need the cluster .ci/swarm runs, and build only with
// -tags swarm (docs/swarm.md says how), until they have passed many runs
// in a row.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/docker"
)

// swarmCluster is the cluster .ci/swarm runs, as its `up` prints it.
type swarmCluster struct {
	manager  string // tcp://IP:2375
	registry string // IP:5000
	workers  []string
	network  string
	cli      *client.Client // the manager's engine
}

// cluster returns the cluster the environment names; without one the test
// skips, but not in CI, which runs .ci/swarm up first.
func cluster(t testing.TB) swarmCluster {
	t.Helper()
	c := swarmCluster{manager: os.Getenv("SWARM_MANAGER"), registry: os.Getenv("SWARM_REGISTRY"), network: os.Getenv("SWARM_NETWORK")}
	if c.manager == "" || c.registry == "" || c.network == "" {
		msg := "no Swarm cluster: run eval \"$(.ci/swarm up)\" first (SWARM_MANAGER, SWARM_REGISTRY, SWARM_NETWORK)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true requires one")
		}
		t.Skip(msg)
	}
	if w := os.Getenv("SWARM_WORKERS"); w != "" {
		c.workers = strings.Split(w, ",")
	}
	cli, err := client.NewClientWithOpts(client.WithHost(c.manager), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c.cli = cli
	return c
}

// gatewayHost is the address of this machine on the cluster's network,
// where the nodes reach the server's gateway.
func (c swarmCluster) gatewayHost(t testing.TB) string {
	host := dockertest.Client(t)
	n, err := host.NetworkInspect(context.Background(), c.network, network.InspectOptions{})
	if err != nil || len(n.IPAM.Config) == 0 {
		t.Fatalf("the cluster's network %s: %v", c.network, err)
	}
	return n.IPAM.Config[0].Gateway
}

// startSwarmServer runs the server on the cluster, and removes at cleanup
// what it left there: its services, and the function images pulled on the
// workers.
func startSwarmServer(t testing.TB, c swarmCluster, db string, images ...dockertest.Image) *server {
	return startSwarmServerArgs(t, c, db, freePort(t), nil, images...)
}

// freePort is a port of this machine that nothing listens on.
func freePort(t testing.TB) int {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// startSwarmServerArgs is startSwarmServer with the gateway's port and more
// of serve's flags.
func startSwarmServerArgs(t testing.TB, c swarmCluster, db string, port int, args []string, images ...dockertest.Image) *server {
	t.Helper()
	// Registered first, so that it runs after the server is killed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The agents too: the server's services all carry its label.
		byLabel := filters.NewArgs(filters.Arg("label", runner.LabelInstance+"="+instanceID(db)))
		if t.Failed() {
			c.logAgents(t, ctx, agentService(instanceID(db)))
		}
		services, _ := c.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: byLabel})
		for _, svc := range services {
			c.cli.ServiceRemove(ctx, svc.ID)
		}
		secrets, _ := c.cli.SecretList(ctx, swarm.SecretListOptions{Filters: byLabel})
		for _, sec := range secrets {
			c.cli.SecretRemove(ctx, sec.ID)
		}
		// What the server pushed and the nodes pulled: the test's images
		// and its agents'.
		ours := map[string]bool{}
		for _, img := range images {
			ours[img.ID] = true
		}
		if img, err := c.cli.ImageInspect(ctx, c.registry+"/minilambda/node-agent:"+agentService(instanceID(db))); err == nil {
			ours[img.ID] = true
		}
		for _, node := range append([]string{c.manager}, c.workers...) {
			nc, err := client.NewClientWithOpts(client.WithHost(node), client.WithAPIVersionNegotiation())
			if err != nil {
				continue
			}
			for _, repo := range []string{c.registry + "/minilambda/functions", c.registry + "/minilambda/node-agent"} {
				imgs, _ := nc.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
				for _, img := range imgs {
					if ours[img.ID] {
						nc.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
					}
				}
			}
			nc.Close()
		}
	})
	return startBinaryEnv(t, binary(t), db, []string{"DOCKER_HOST=" + c.manager}, append([]string{
		"--engine", "swarm", "--swarm-registry", c.registry,
		"--swarm-gateway", fmt.Sprintf("0.0.0.0:%d", port), "--swarm-advertise", fmt.Sprintf("%s:%d", c.gatewayHost(t), port)},
		args...)...)
}

// bashHandler is a handler for the tutorial's runtime that takes long
// enough for a pool to grow, and names its event in its logs and answer.
const bashHandler = `function handler () {
  NAME=$(echo "$1" | sed -E 's/.*"name": ?"([^"]*)".*/\1/')
  echo "handling \"$NAME\"" 1>&2
  sleep 1.5
  echo "Hello, $NAME!"
}
`

// bashImage builds, on the manager, the tutorial's bash runtime on the
// Debian image: that image is this machine's, loaded into the manager
// for the test when the manager does not have it.
func (c swarmCluster) bashImage(t *testing.T) dockertest.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	host := dockertest.Client(t)
	base := dockertest.DebianImage(t, host)
	if _, err := c.cli.ImageInspect(ctx, base); err != nil {
		rc, err := host.ImageSave(ctx, []string{base})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.cli.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
		rc.Close()
		if err != nil {
			t.Fatalf("load %s into the manager: %v", base, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		dockertest.RemoveImageAtCleanup(t, c.cli, base)
	}
	return dockertest.BuildImage(t, c.cli, "swarm-bash",
		map[string][]byte{
			"Dockerfile": []byte("FROM " + base + "\nCOPY bootstrap /var/runtime/bootstrap\nCOPY function.sh /var/task/function.sh\n" +
				"ENTRYPOINT [\"/var/runtime/bootstrap\"]\n"),
			"function.sh": []byte(bashHandler),
		},
		map[string][]byte{"bootstrap": []byte(lambdatest.TutorialBootstrap)})
}

// placements records where the services of function fn run their tasks,
// until stop is called: placed gives, by service ID (an invocation's
// container_id), the hostname of the node of each service seen running.
func (c swarmCluster) placements(fn string) (placed func() map[string]string, stop func()) {
	var mu sync.Mutex
	seen := map[string]string{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		hostnames := map[string]string{}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if nodes, err := c.cli.NodeList(ctx, swarm.NodeListOptions{}); err == nil {
				for _, n := range nodes {
					hostnames[n.ID] = n.Description.Hostname
				}
			}
			services, _ := c.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelFunction+"="+fn))})
			for _, svc := range services {
				tasks, _ := c.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
				for _, task := range tasks {
					if task.NodeID != "" && task.Status.State == swarm.TaskStateRunning {
						mu.Lock()
						seen[svc.ID] = hostnames[task.NodeID]
						mu.Unlock()
					}
				}
			}
			cancel()
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	placed = func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
	var once sync.Once
	return placed, func() { once.Do(func() { close(done); <-stopped }) }
}

// TestSwarm runs each mode of function on a real three-node cluster: the
// containers land on more than one node, and every invocation gets its own
// result and logs across machines.
func TestSwarm(t *testing.T) {
	c := cluster(t)
	cold := dockertest.BuildGoImage(t, c.cli, "testdata/fn", "swarm-cold")
	hot := dockertest.BuildGoImage(t, c.cli, "testdata/hot", "swarm-hot")
	// aws-lambda-go, as the Lambda sample, with a sleep_ms of its own.
	lambda := dockertest.BuildGoImage(t, c.cli, "internal/testfn/lambdago", "swarm-lambda")
	bash := c.bashImage(t)
	db := t.TempDir() + "/events.db"
	// On the workers only, which run dockerd --no-new-privileges.
	// Idle containers stop soon: each mode's calls find the nodes as
	// empty as the one before found them, and Swarm, which balances all
	// tasks, not a function's, spreads each mode's over the nodes.
	s := startSwarmServerArgs(t, c, db, freePort(t), []string{"--swarm-constraints", "node.role==worker", "--hot-idle-ttl", "2s"}, cold, hot, lambda, bash)
	for _, f := range []map[string]any{
		{"name": "cold", "image": cold.Tag},
		{"name": "hot", "image": hot.Tag, "mode": "hot"},
		{"name": "lambda", "image": lambda.Tag, "mode": "lambda"},
		{"name": "bash", "image": bash.Tag, "mode": "lambda", "handler": "function.handler"},
	} {
		if code := s.call("POST", "/functions", f, nil); code != 201 {
			t.Fatalf("register %v: %d", f["name"], code)
		}
	}

	waitAgents(t, s, "cold")

	for _, fn := range []string{"cold", "hot", "lambda", "bash"} {
		t.Run(fn, func(t *testing.T) {
			var f struct{ ID string }
			s.call("GET", "/functions/"+fn, nil, &f)
			placed, stop := c.placements(f.ID)
			var wg sync.WaitGroup
			const calls = 12
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var inv projections.Invocation
					name := fmt.Sprintf("%s-%d", fn, i)
					// A call takes long enough for the pools to grow.
					code := s.call("POST", "/invoke/"+fn, map[string]any{"event": map[string]any{"name": name, "sleep_ms": 1500, "hang_ms": 1500}}, &inv)
					if code != 200 || inv.Status != "COMPLETED" {
						t.Errorf("%s: %d %s %s %s", name, code, inv.Status, inv.Error, inv.Logs)
						return
					}
					if want := "Hello, " + name + "!"; !strings.Contains(inv.Result, want) {
						t.Errorf("%s: result %q, want %q in it", name, inv.Result, want)
					}
					if want := fmt.Sprintf("handling %q", name); !strings.Contains(inv.Logs, want) {
						t.Errorf("%s: logs %q, want %q in them", name, inv.Logs, want)
					}
				}()
			}
			wg.Wait()
			stop()
			nodes := map[string]bool{}
			for _, node := range placed() {
				nodes[node] = true
			}
			if len(nodes) < 2 {
				t.Errorf("the %s function's containers ran on %d node(s), want at least 2: %v", fn, len(nodes), nodes)
			}
			if fn != "cold" {
				c.waitGone(t, f.ID)
			}
		})
	}

	// A function container on a worker: "network": "none" reaches
	// nothing, where the same function on the default network reaches
	// the registry; no process in it can gain privileges, nor has any
	// capability.
	for _, f := range []map[string]any{
		{"name": "probe", "image": cold.Tag, "network": "none"},
		{"name": "probe-bridge", "image": cold.Tag},
		// Swarm finds no node with 64 cores to reserve.
		{"name": "huge", "image": cold.Tag, "cpus": 64},
		{"name": "huge-lambda", "image": lambda.Tag, "mode": "lambda", "cpus": 64},
	} {
		if code := s.call("POST", "/functions", f, nil); code != 201 {
			t.Fatalf("register %v: %d", f["name"], code)
		}
	}
	t.Run("isolation", func(t *testing.T) {
		for fn, reaches := range map[string]bool{"probe": false, "probe-bridge": true} {
			var inv projections.Invocation
			code := s.call("POST", "/invoke/"+fn, map[string]any{"event": map[string]any{"name": fn, "dial": c.registry, "status": true}}, &inv)
			var a struct {
				Dial       string `json:"dial"`
				NoNewPrivs string `json:"no_new_privs"`
				CapEff     string `json:"cap_eff"`
			}
			if code != 200 || inv.Status != "COMPLETED" || json.Unmarshal([]byte(inv.Result), &a) != nil {
				t.Fatalf("%s: %d %s %q %s", fn, code, inv.Status, inv.Result, inv.Error)
			}
			if (a.Dial == "connected") != reaches {
				t.Errorf("%s dialled the registry %s: %q", fn, c.registry, a.Dial)
			}
			if a.NoNewPrivs != "1" || a.CapEff != "0000000000000000" {
				t.Errorf("%s: NoNewPrivs %q, CapEff %q; want 1 and none", fn, a.NoNewPrivs, a.CapEff)
			}
		}
	})

	// 6 MiB in and 6 MiB out, between the server and a worker.
	t.Run("large", func(t *testing.T) {
		const echo = 6<<20 - 4096
		pad := strings.Repeat("p", 6<<20-200)
		var inv projections.Invocation
		code := s.call("POST", "/invoke/lambda", map[string]any{"event": map[string]any{"name": "large", "pad": pad, "echo": echo}}, &inv)
		var a struct {
			Echo string `json:"echo"`
		}
		if code != 200 || inv.Status != "COMPLETED" || json.Unmarshal([]byte(inv.Result), &a) != nil || len(a.Echo) != echo {
			t.Fatalf("%d %s, a result of %d bytes with an echo of %d (want %d): %s", code, inv.Status, len(inv.Result), len(a.Echo), echo, inv.Error)
		}
	})

	// A container Swarm cannot place fails its invocation with Swarm's
	// reason, well within the function's timeout.
	t.Run("unplaceable", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, fn := range []string{"huge", "huge-lambda"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				var inv projections.Invocation
				code := s.call("POST", "/invoke/"+fn, map[string]any{"event": map[string]any{"name": fn}}, &inv)
				if code == 200 || inv.Status != "FAILED" || !strings.Contains(inv.Error, "could not place") {
					t.Errorf("%s: %d %s %q, want FAILED saying Swarm could not place it", fn, code, inv.Status, inv.Error)
				}
				t.Logf("%s: %d %s after %v: %s", fn, code, inv.Status, time.Since(start).Round(time.Second), inv.Error)
			}()
		}
		wg.Wait()
	})

	// Stopped, the server leaves no service; and the agents remove the
	// containers of the finished tasks, which Swarm leaves on the nodes.
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The agents stay, for the server's next start; the cleanup removes
	// them.
	byLabel := filters.NewArgs(filters.Arg("label", runner.LabelInstance+"="+instanceID(db)), filters.Arg("label", docker.LabelFunction))
	deadline := time.Now().Add(time.Minute)
	for {
		left := c.leftovers(t, byLabel)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left on the cluster a minute after shutdown: %v", left)
		}
		time.Sleep(time.Second)
	}
}

// waitGone waits until function fn (by ID) has no service left: its idle
// containers stopped.
func (c swarmCluster) waitGone(t testing.TB, fn string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		services, err := c.cli.ServiceList(context.Background(), swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelFunction+"="+fn))})
		if err == nil && len(services) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s has %d services a minute after its last call", fn, len(services))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitAgents returns once an invocation of fn completes: the agents start
// with the server, and invocations fail clearly until they are there.
func waitAgents(t testing.TB, s *server, fn string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var inv projections.Invocation
		code := s.call("POST", "/invoke/"+fn, map[string]any{"event": map[string]string{"name": "first"}}, &inv)
		if code == 200 && inv.Status == "COMPLETED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no invocation completed on the cluster within 3 minutes; the last: %d %+v", code, inv)
		}
		time.Sleep(time.Second)
	}
}

// TestSwarmFaults: the node agent of a worker restarting, the server
// killed and started again, and a worker killed, each while invocations
// run. No acknowledged invocation is lost: async ones are retried and
// complete; a sync one on the lost worker fails, saying so. The worker's
// kill comes last: the cluster is not whole after it, and .ci/swarm up
// builds it again.
func TestSwarmFaults(t *testing.T) {
	c := cluster(t)
	fn := dockertest.BuildGoImage(t, c.cli, "testdata/fn", "swarm-faults")
	db := t.TempDir() + "/events.db"
	port := freePort(t)
	args := []string{"--swarm-constraints", "node.role==worker"}
	s := startSwarmServerArgs(t, c, db, port, args, fn)
	if code := s.call("POST", "/functions", map[string]any{"name": "slow", "image": fn.Tag, "timeout": 120}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	var f struct{ ID string }
	s.call("GET", "/functions/slow", nil, &f)
	waitAgents(t, s, "slow")
	host := dockertest.Client(t)

	// enqueue makes n async invocations of slow, each sleeping ms.
	enqueue := func(s *server, prefix string, n, ms int) []string {
		var ids []string
		for i := range n {
			var inv projections.Invocation
			if code := s.call("POST", "/invoke/slow/async", map[string]any{"event": map[string]any{"name": fmt.Sprintf("%s-%d", prefix, i), "sleep_ms": ms}}, &inv); code != 202 {
				t.Fatalf("enqueue: %d", code)
			}
			ids = append(ids, inv.InvocationID)
		}
		return ids
	}
	// completed waits until every invocation in ids has ended, and checks
	// that each completed with its own answer; it returns them.
	completed := func(s *server, ids []string) []projections.Invocation {
		t.Helper()
		var out []projections.Invocation
		deadline := time.Now().Add(4 * time.Minute)
		for _, id := range ids {
			for {
				var inv projections.Invocation
				s.call("GET", "/invocations/"+id, nil, &inv)
				if inv.Status == "COMPLETED" || inv.Status == "FAILED" {
					if inv.Status != "COMPLETED" {
						t.Errorf("async %s: %s after %d attempts: %s", id, inv.Status, inv.Attempts, inv.Error)
					}
					out = append(out, inv)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("async %s still %s after 4 minutes", id, inv.Status)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		return out
	}
	// runningOn waits until at least one invocation in ids runs on each
	// node named, and returns where each running one is.
	runningOn := func(s *server, ids []string, placed func() map[string]string, nodes ...string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			where := map[string]string{}
			on := map[string]bool{}
			services := placed()
			for _, id := range ids {
				var inv projections.Invocation
				s.call("GET", "/invocations/"+id, nil, &inv)
				if node := services[inv.ContainerID]; inv.Status == "RUNNING" && node != "" {
					where[id], on[node] = node, true
				}
			}
			all := true
			for _, n := range nodes {
				all = all && on[n]
			}
			if all {
				return where
			}
			if time.Now().After(deadline) {
				t.Fatalf("no invocation ran on each of %v within 2 minutes: %v", nodes, where)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	placed, stopWatch := c.placements(f.ID)
	defer stopWatch()
	const worker1, worker2 = "minilambda-swarm-worker1", "minilambda-swarm-worker2"

	t.Run("agent restarts", func(t *testing.T) {
		ids := enqueue(s, "agent", 6, 4000)
		onWorker1 := runningOn(s, ids, placed, worker1)
		w1 := nodeClient(t, c, worker1)
		agents, err := w1.ContainerList(context.Background(), container.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+agentService(instanceID(db))))})
		if err != nil || len(agents) != 1 {
			t.Fatalf("the agent on %s: %v %v", worker1, agents, err)
		}
		if err := w1.ContainerKill(context.Background(), agents[0].ID, "KILL"); err != nil {
			t.Fatal(err)
		}
		// Each completed: on worker1 when its container outlived the
		// agent's restart, retried otherwise.
		retried := 0
		for _, inv := range completed(s, ids) {
			if inv.Attempts > 1 {
				retried++
			}
		}
		t.Logf("of %d async invocations, %d on %s when its agent was killed; %d retried", len(ids), len(onWorker1), worker1, retried)
		// Swarm starts the agent again, and worker1 takes work again.
		ids = enqueue(s, "agent-after", 6, 3000)
		runningOn(s, ids, placed, worker1, worker2)
		completed(s, ids)
	})

	parent := t
	t.Run("server restarts", func(t *testing.T) {
		ids := enqueue(s, "server", 4, 6000)
		where := runningOn(s, ids, placed, worker1, worker2)
		before := placed()
		s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
		// The parent's: the server serves the subtests after this one.
		s = startSwarmServerArgs(parent, c, db, port, args, fn)
		for _, inv := range completed(s, ids) {
			if where[inv.InvocationID] != "" && inv.Attempts < 2 {
				t.Errorf("%s ran when the server was killed, and completed in %d attempt(s)", inv.InvocationID, inv.Attempts)
			}
		}
		// The services of the server before were found and removed.
		for svc := range before {
			_, _, err := c.cli.ServiceInspectWithRaw(context.Background(), svc, swarm.ServiceInspectOptions{})
			if err == nil {
				t.Errorf("service %s of the killed server is still there", svc)
			}
		}
	})

	t.Run("worker killed", func(t *testing.T) {
		const sleep = 12000
		async := enqueue(s, "killed", 6, sleep)
		type answer struct {
			inv  projections.Invocation
			code int
		}
		answers := make(chan answer, 6)
		for i := range 6 {
			go func() {
				var inv projections.Invocation
				code := s.call("POST", "/invoke/slow", map[string]any{"event": map[string]any{"name": fmt.Sprintf("sync-%d", i), "sleep_ms": sleep}}, &inv)
				answers <- answer{inv, code}
			}()
		}
		// Sync and async invocations run on both workers.
		var where map[string]string // by invocation ID
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var p page
			s.call("GET", "/invocations?function=slow&status=RUNNING&limit=100", nil, &p)
			services := placed()
			where = map[string]string{}
			on := map[string]bool{}
			for _, listed := range p.Invocations {
				var inv projections.Invocation
				s.call("GET", "/invocations/"+listed.InvocationID, nil, &inv)
				if node := services[inv.ContainerID]; inv.Status == "RUNNING" && node != "" {
					where[inv.InvocationID] = node
					on[fmt.Sprintf("%v %s", inv.Async, node)] = true
				}
			}
			if on["true "+worker1] && on["true "+worker2] && on["false "+worker1] && on["false "+worker2] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sync and async invocations did not run on both workers within 2 minutes: %v", on)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := host.ContainerKill(context.Background(), worker2, "KILL"); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		for range 6 {
			a := <-answers
			switch node := where[a.inv.InvocationID]; node {
			case worker2:
				if a.code == 200 || a.inv.Status != "FAILED" || !strings.Contains(a.inv.Error, "lost or cut off") {
					t.Errorf("sync on the killed %s: %d %s %q, want FAILED saying its node was lost", worker2, a.code, a.inv.Status, a.inv.Error)
				}
				t.Logf("sync on %s: %d %s %v after the kill: %s", node, a.code, a.inv.Status, time.Since(killed).Round(time.Second), a.inv.Error)
			case worker1:
				if a.code != 200 || a.inv.Status != "COMPLETED" {
					t.Errorf("sync on %s: %d %s %q", node, a.code, a.inv.Status, a.inv.Error)
				}
			default:
				// Not yet running when the worker was killed.
				t.Logf("sync not yet running at the kill: %d %s %q", a.code, a.inv.Status, a.inv.Error)
			}
		}
		retried := 0
		for _, inv := range completed(s, async) {
			if where[inv.InvocationID] == worker2 {
				retried++
				if inv.Attempts < 2 || placed()[inv.ContainerID] != worker1 {
					t.Errorf("%s ran on the killed %s, and completed in %d attempt(s) on %q", inv.InvocationID, worker2, inv.Attempts, placed()[inv.ContainerID])
				}
			}
		}
		t.Logf("async invocations on the killed worker, retried and completed on %s: %d of %d", worker1, retried, len(async))
	})
}

// nodeClient is a client of the engine of the node with hostname name.
func nodeClient(t *testing.T, c swarmCluster, name string) *client.Client {
	t.Helper()
	ctx := context.Background()
	nodes, err := c.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Description.Hostname == name {
			nc, err := client.NewClientWithOpts(client.WithHost("tcp://"+n.Status.Addr+":2375"), client.WithAPIVersionNegotiation())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			return nc
		}
	}
	t.Fatalf("no node %s", name)
	return nil
}

// leftovers lists the function services, and the containers on every
// node, that match f.
func (c swarmCluster) leftovers(t *testing.T, f filters.Args) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var left []string
	services, err := c.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		if svc.Spec.Mode.Global == nil {
			left = append(left, "service "+svc.Spec.Name)
		}
	}
	for _, node := range append([]string{c.manager}, c.workers...) {
		nc, err := client.NewClientWithOpts(client.WithHost(node), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		list, err := nc.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range list {
			left = append(left, fmt.Sprintf("container %.12s on %s (%s)", ct.ID, node, ct.State))
		}
	}
	return left
}

// logAgents logs the last lines of the node agents' logs, for a failed
// test: what the server's log cannot show of the other side.
func (c swarmCluster) logAgents(t testing.TB, ctx context.Context, service string) {
	rc, err := c.cli.ServiceLogs(ctx, service, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "300", Timestamps: true})
	if err != nil {
		t.Logf("the node agents' logs: %v", err)
		return
	}
	defer rc.Close()
	var out strings.Builder
	stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<20))
	t.Logf("the node agents' logs:\n%s", out.String())
}
