//go:build swarm

// The Swarm tests need the cluster .ci/swarm runs, and build only with
// -tags swarm (docs/swarm.md says how), until they have passed many runs
// in a row.

package main

import (
	"context"
	"fmt"
	"net"
	"os"
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
	"github.com/minilambda/minilambda/internal/dockertest"
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
func cluster(t *testing.T) swarmCluster {
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
func (c swarmCluster) gatewayHost(t *testing.T) string {
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
func startSwarmServer(t *testing.T, c swarmCluster, db string, images ...dockertest.Image) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// Registered first, so that it runs after the server is killed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The agents too: the server's services all carry its label.
		byLabel := filters.NewArgs(filters.Arg("label", runner.LabelInstance+"="+instanceID(db)))
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
	return startBinaryEnv(t, binary(t), db, []string{"DOCKER_HOST=" + c.manager},
		"--engine", "swarm", "--swarm-registry", c.registry,
		"--swarm-gateway", fmt.Sprintf("0.0.0.0:%d", port), "--swarm-advertise", fmt.Sprintf("%s:%d", c.gatewayHost(t), port))
}

// tasksOf records, until stop closes, the nodes the tasks of function fn's
// services ran on.
func (c swarmCluster) watchNodes(fn string, stop <-chan struct{}) <-chan map[string]bool {
	out := make(chan map[string]bool, 1)
	go func() {
		nodes := map[string]bool{}
		defer func() { out <- nodes }()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			services, _ := c.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelFunction+"="+fn))})
			for _, svc := range services {
				tasks, _ := c.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
				for _, task := range tasks {
					if task.NodeID != "" && task.Status.State == swarm.TaskStateRunning {
						nodes[task.NodeID] = true
					}
				}
			}
			cancel()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
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
	db := t.TempDir() + "/events.db"
	s := startSwarmServer(t, c, db, cold, hot, lambda)
	for _, f := range []map[string]any{
		{"name": "cold", "image": cold.Tag},
		{"name": "hot", "image": hot.Tag, "mode": "hot"},
		{"name": "lambda", "image": lambda.Tag, "mode": "lambda"},
	} {
		if code := s.call("POST", "/functions", f, nil); code != 201 {
			t.Fatalf("register %v: %d", f["name"], code)
		}
	}

	// The agents start with the server: the first invocation may wait
	// for them, and fails clearly until they are there.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var inv projections.Invocation
		code := s.call("POST", "/invoke/cold", map[string]any{"event": map[string]string{"name": "first"}}, &inv)
		if code == 200 && inv.Status == "COMPLETED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no invocation completed on the cluster within 3 minutes; the last: %d %+v", code, inv)
		}
		time.Sleep(time.Second)
	}

	for _, fn := range []string{"cold", "hot", "lambda"} {
		t.Run(fn, func(t *testing.T) {
			var f struct{ ID string }
			s.call("GET", "/functions/"+fn, nil, &f)
			stop := make(chan struct{})
			nodes := c.watchNodes(f.ID, stop)
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
			close(stop)
			if got := <-nodes; len(got) < 2 {
				t.Errorf("the %s function's containers ran on %d node(s), want at least 2: %v", fn, len(got), got)
			}
		})
	}

	// Stopped, the server leaves no service; and the agents remove the
	// containers of the finished tasks, which Swarm leaves on the nodes.
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The agents stay, for the server's next start; the cleanup removes
	// them.
	byLabel := filters.NewArgs(filters.Arg("label", runner.LabelInstance+"="+instanceID(db)), filters.Arg("label", docker.LabelFunction))
	deadline = time.Now().Add(time.Minute)
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
