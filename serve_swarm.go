package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/minilambda/minilambda/internal/pki"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

// swarmConfig is serve's choice of engine, and what a Swarm cluster needs.
type swarmConfig struct {
	engine      string
	registry    string
	gateway     string
	advertise   string
	noneNetwork string
	constraints string
}

func (c *swarmConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.engine, "engine", "docker", "docker: the one engine DOCKER_HOST names; swarm: a Docker Swarm cluster whose manager DOCKER_HOST names")
	fs.StringVar(&c.registry, "swarm-registry", "", "with --engine swarm: the registry (host:port) the manager pushes images to and the nodes pull from")
	fs.StringVar(&c.gateway, "swarm-gateway", ":8301", "with --engine swarm: where the node agents' gateway listens (mutual TLS)")
	fs.StringVar(&c.advertise, "swarm-advertise", "", "with --engine swarm: the gateway's address (host:port) as the nodes reach it")
	fs.StringVar(&c.noneNetwork, "swarm-none-network", docker.DefaultNoneNetwork, "with --engine swarm: the network of \"network\": \"none\" functions, made when missing")
	fs.StringVar(&c.constraints, "swarm-constraints", "", "with --engine swarm: placement constraints for every function container, comma-separated (node.role==worker keeps them off the managers)")
}

func (c swarmConfig) check() error {
	switch c.engine {
	case "docker":
		return nil
	case "swarm":
	default:
		return fmt.Errorf("serve: --engine must be docker or swarm, got %q", c.engine)
	}
	if c.registry == "" || c.advertise == "" {
		return errors.New("serve: --engine swarm needs --swarm-registry and --swarm-advertise")
	}
	if _, _, err := net.SplitHostPort(c.advertise); err != nil {
		return fmt.Errorf("serve: --swarm-advertise: %v", err)
	}
	if _, err := docker.ParseConstraints(c.constraints); err != nil {
		return fmt.Errorf("serve: --swarm-constraints: %v", err)
	}
	return nil
}

// driver is an engine serve closes when it ends.
type driver interface {
	engine.Driver
	Close() error
}

// agentService names the node agents' global service of the server named
// instance: two servers on one cluster each have agents of their own,
// which trust only their own server's CA.
func agentService(instance string) string { return "minilambda-node-agent-" + instance }

// openEngine returns the engine c asks for. A cluster's comes with the
// gateway of its node agents, serving until the driver closes (after the
// invocations under way, which it carries), and the agents' service is
// made ready in the background: invocations fail clearly until the agents
// connect.
func openEngine(c serveConfig, logger *slog.Logger) (driver, *agent.Gateway, error) {
	if c.swarm.engine != "swarm" {
		d, err := docker.NewFromEnv(logger)
		return d, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	instance := instanceID(c.db)
	constraints, _ := docker.ParseConstraints(c.swarm.constraints)
	sw, err := docker.NewSwarmFromEnv(docker.SwarmOptions{Registry: c.swarm.registry, NoneNetwork: c.swarm.noneNetwork,
		Constraints: constraints, Logger: logger})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	state := filepath.Dir(c.db)
	material, err := pki.LoadOrCreate(filepath.Join(state, "swarm-tls"))
	if err != nil {
		sw.Close()
		cancel()
		return nil, nil, err
	}
	root := agent.DefaultNodeRoot + "/" + instance
	gw := agent.NewGateway(agent.GatewayOptions{NodeRoot: root, Logger: logger, AwaitReady: true})
	// Containers start once the agents are connected, or, should they not
	// come, after agentsWait all the same: then they fail clearly.
	time.AfterFunc(agentsWait, gw.Ready)
	ln, err := net.Listen("tcp", c.swarm.gateway)
	if err != nil {
		sw.Close()
		cancel()
		return nil, nil, fmt.Errorf("serve: the node agents' gateway: %w", err)
	}
	srv := &http.Server{
		Handler:   gw,
		TLSConfig: material.ServerConfig(),
		Protocols: new(http.Protocols),
		// A node that vanishes is noticed within half a minute: its
		// invocations fail, or are retried elsewhere, instead of waiting.
		// Shorter, a busy server's late answer to a ping (5 s were seen on
		// two loaded cores) would drop every node at once.
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.Protocols.SetHTTP2(true)
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	logger.Info("node agents' gateway listening", "addr", ln.Addr().String(), "advertised", c.swarm.advertise)
	go startAgents(ctx, c, sw, gw, material.AgentBundle, instance, root, logger)
	return swarmDriver{sw, func() { cancel(); srv.Close() }}, gw, nil
}

// swarmDriver closes the gateway with the engine.
type swarmDriver struct {
	*docker.Swarm
	stop func()
}

func (d swarmDriver) Close() error {
	d.stop()
	return d.Swarm.Close()
}

// agentsWait bounds how long containers wait for the node agents to
// connect when the server starts.
const agentsWait = 90 * time.Second

// awaitAgents lets containers start (gw.Ready) once an agent is connected
// from every ready node, or within half a minute all the same.
func awaitAgents(ctx context.Context, sw *docker.Swarm, gw *agent.Gateway, logger *slog.Logger) {
	defer gw.Ready()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := sw.ReadyNodes(ctx)
	if err == nil {
		err = gw.WaitNodes(ctx, n)
	}
	if err != nil {
		logger.Warn("not every node's agent connected; containers start on those that did", "err", err)
		return
	}
	logger.Info("node agents connected", "nodes", n)
}

// startAgents builds the node agent and the init and runs them on every
// node, trying again until it succeeds or ctx ends.
func startAgents(ctx context.Context, c serveConfig, sw *docker.Swarm, gw *agent.Gateway, bundle []byte, instance, root string, logger *slog.Logger) {
	dir := filepath.Join(filepath.Dir(c.db), "init")
	for pause := 5 * time.Second; ; pause = min(2*pause, time.Minute) {
		err := func() error {
			bin, err := agent.BuildNodeAgent(ctx, dir)
			if err != nil {
				return err
			}
			init := c.init
			if init == "" {
				init, err = agent.BuildInit(ctx, dir)
			} else {
				err = agent.CheckInit(init)
			}
			if err != nil {
				return err
			}
			return sw.EnsureAgent(ctx, docker.AgentSpec{Name: agentService(instance), Binary: bin, Init: init, Server: c.swarm.advertise, Root: root,
				TLS: bundle, Reap: runner.LabelInstance + "=" + instance, Labels: map[string]string{runner.LabelInstance: instance}})
		}()
		if err == nil {
			logger.Info("node agents' service ready", "service", agentService(instance))
			awaitAgents(ctx, sw, gw, logger)
			return
		}
		logger.Error("the node agents cannot start; trying again", "err", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}
