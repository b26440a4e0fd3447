package docker

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/runner/engine"
)

// SwarmOptions configure a Swarm.
type SwarmOptions struct {
	// Registry is the registry ("host:port") the manager pushes function
	// images to and the nodes pull them from, by digest.
	Registry string
	// NoneNetwork is the network of "network": "none" functions
	// (DefaultNoneNetwork when empty); the driver makes it when missing.
	NoneNetwork string
	// Constraints are placement constraints for every function container
	// (ParseConstraints reads them), such as node.role==worker.
	Constraints []string
	Logger      *slog.Logger
}

// ParseConstraints reads comma-separated placement constraints, each
// "ATTRIBUTE==VALUE" or "ATTRIBUTE!=VALUE" as Swarm takes them; Swarm
// checks the attributes when a service is made.
func ParseConstraints(list string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		op := "=="
		if !strings.Contains(c, op) {
			op = "!="
		}
		k, v, ok := strings.Cut(c, op)
		if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("constraint %q: want ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// DefaultNoneNetwork is the network a Swarm service of a "network": "none"
// function joins. Swarm's services cannot use the engine's "none"
// network, so it is a swarm-scoped bridge network that is internal (no
// route out) and keeps its containers apart (inter-container traffic off):
// each container has an interface that reaches nothing.
const DefaultNoneNetwork = "minilambda-none"

// taskPoll is how often the tasks of the services under way are read: the
// exit of a container matters to the runner only when its init has not
// said already.
const taskPoll = 250 * time.Millisecond

// unplaceableWait is how long a task may stay pending with Swarm saying
// why it cannot place it (no node with the memory it reserves, say)
// before its container is given up: the runner then gives the event to
// another container, or fails the invocation with Swarm's reason, instead
// of waiting out the function's timeout.
const unplaceableWait = 10 * time.Second

// Swarm runs each function container as a one-task Swarm service (mode
// replicated-job, no restart) on a cluster whose manager the client talks
// to. Images are loaded into the manager's engine, as with [Docker], and
// pushed to the cluster's registry, from which the nodes pull them by
// digest. It is safe for concurrent use.
type Swarm struct {
	*Docker
	cli    *client.Client
	opts   SwarmOptions
	logger *slog.Logger

	pushMu sync.Mutex
	pushes map[string]*push // by image ID

	netMu sync.Mutex
	netID string // the "none" network's, once known

	watchMu  sync.Mutex
	watching map[string]*service // by service ID
	polling  bool
}

var _ engine.Driver = (*Swarm)(nil)

type push struct {
	done chan struct{}
	ref  string
	err  error
}

// NewSwarmFromEnv returns a Swarm whose client is configured from the
// environment (DOCKER_HOST must name a manager).
func NewSwarmFromEnv(opts SwarmOptions) (*Swarm, error) {
	if opts.Registry == "" {
		return nil, errors.New("docker: a Swarm needs a registry the nodes pull from")
	}
	if opts.NoneNetwork == "" {
		opts.NoneNetwork = DefaultNoneNetwork
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w", err)
	}
	d := newDocker(cli, opts.Logger)
	d.closer = cli
	return &Swarm{Docker: d, cli: cli, opts: opts, logger: opts.Logger.With("subsystem", "swarm"),
		pushes: map[string]*push{}, watching: map[string]*service{}}, nil
}

// Ping checks that the engine answers and manages a swarm.
func (s *Swarm) Ping(ctx context.Context) error {
	if err := s.Docker.Ping(ctx); err != nil {
		return err
	}
	info, err := s.cli.Info(ctx)
	if err != nil {
		return wrapEngineErr("info", err)
	}
	if !info.Swarm.ControlAvailable {
		return fmt.Errorf("%w: the engine is not a swarm manager (swarm state %q)", engine.ErrEngineUnavailable, info.Swarm.LocalNodeState)
	}
	return nil
}

// pushed returns the reference by digest under which the nodes pull the
// image whose ID is id, pushing it to the registry the first time.
func (s *Swarm) pushed(ctx context.Context, id string) (string, error) {
	s.pushMu.Lock()
	p := s.pushes[id]
	if p == nil || (p.err != nil && isDone(p.done)) {
		p = &push{done: make(chan struct{})}
		s.pushes[id] = p
		go func() {
			defer close(p.done)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			p.ref, p.err = s.push(ctx, id)
		}()
	}
	s.pushMu.Unlock()
	select {
	case <-p.done:
		return p.ref, p.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// push tags the image by its ID in the registry's repository and pushes
// it, and returns the repository's name with the manifest's digest.
func (s *Swarm) push(ctx context.Context, id string) (string, error) {
	repo := s.opts.Registry + "/minilambda/functions"
	tag := repo + ":" + strings.TrimPrefix(id, "sha256:")
	if err := s.cli.ImageTag(ctx, id, tag); err != nil {
		return "", wrapEngineErr("tag image for the registry", err)
	}
	rc, err := s.cli.ImagePush(ctx, tag, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		return "", wrapEngineErr("push image", err)
	}
	defer rc.Close()
	digest, err := pushDigest(rc)
	if err != nil {
		return "", fmt.Errorf("runner: push %s to %s: %w", shortID(id), s.opts.Registry, err)
	}
	return repo + "@" + digest, nil
}

// pushDigest reads a push's progress stream to its end and returns the
// digest of the manifest it pushed.
func pushDigest(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	var digest string
	for {
		var msg struct {
			Error string `json:"error"`
			Aux   struct {
				Digest string `json:"Digest"`
			} `json:"aux"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return "", err
		}
		if msg.Error != "" {
			return "", errors.New(msg.Error)
		}
		if msg.Aux.Digest != "" {
			digest = msg.Aux.Digest
		}
	}
	if digest == "" {
		return "", errors.New("the registry gave no digest")
	}
	return digest, nil
}

// noneNetwork returns the ID of the network of "none" functions, made the
// first time it is needed.
func (s *Swarm) noneNetwork(ctx context.Context) (string, error) {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.netID != "" {
		return s.netID, nil
	}
	name := s.opts.NoneNetwork
	if n, err := s.cli.NetworkInspect(ctx, name, network.InspectOptions{Scope: "swarm"}); err == nil {
		s.netID = n.ID
		return s.netID, nil
	}
	// A failure is tried again on the next call.
	created, err := s.cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge", Scope: "swarm", Internal: true,
		Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
		Labels:  map[string]string{LabelManaged: "true"},
	})
	if err != nil {
		return "", wrapEngineErr("create the network of \"none\" functions", err)
	}
	s.netID = created.ID
	return s.netID, nil
}

// serviceSpec is the service for s, whose image is pulled by ref; img is
// the image's inspection on the manager.
func (s *Swarm) serviceSpec(sp engine.Spec, img image.InspectResponse, ref, netID string) swarm.ServiceSpec {
	config, _ := containerConfig(sp, img.ID)
	config.Labels[LabelDetached] = "true"
	if len(sp.Wrap) > 0 {
		config.Entrypoint, config.Cmd = wrappedCommand(sp, img), nil
	}
	labels := config.Labels
	cs := &swarm.ContainerSpec{
		Image:  ref,
		Labels: labels,
		// Entrypoint and command, as containerConfig gives them: nil
		// keeps the image's.
		Command:        config.Entrypoint,
		Args:           config.Cmd,
		Env:            config.Env,
		Dir:            sp.WorkingDir,
		ReadOnly:       sp.ReadOnly,
		CapabilityDrop: []string{"ALL"},
	}
	for _, m := range sp.Mounts {
		cs.Mounts = append(cs.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: true})
	}
	if sp.ReadOnly {
		cs.Mounts = append(cs.Mounts, mount.Mount{Type: mount.TypeTmpfs, Target: "/tmp",
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20, Mode: 0o1777}})
	}
	memory := int64(sp.MemoryMB) << 20
	cpus := int64(sp.CPUs * 1e9)
	var networks []swarm.NetworkAttachmentConfig
	switch sp.Network {
	case "bridge":
		// A service with no network gets the engine's bridge.
	case "none":
		networks = []swarm.NetworkAttachmentConfig{{Target: netID}}
	default:
		networks = []swarm.NetworkAttachmentConfig{{Target: sp.Network}}
	}
	one := uint64(1)
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: serviceName(sp.FunctionID), Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources: &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{NanoCPUs: cpus, MemoryBytes: memory, Pids: PidsLimit},
				Reservations: &swarm.Resources{NanoCPUs: int64(sp.ReservedCPUs * 1e9), MemoryBytes: memory},
			},
			// The runner replaces a container that ends; Swarm must not.
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			// Output reaches the server through the init only.
			LogDriver: &swarm.Driver{Name: "none"},
			Networks:  networks,
		},
		Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}
}

// serviceName is a service's name: Swarm's names are at most 63 bytes.
func serviceName(functionID string) string {
	name := containerName("fn-" + functionID)
	if len(name) > 63 {
		name = name[:54] + name[len(name)-9:]
	}
	return name
}

// StartDetached creates the service of one container of s; see
// engine.Driver. It returns once Swarm has the service: the task is placed
// and started after, and the init's connection says when it runs.
func (s *Swarm) StartDetached(ctx context.Context, sp engine.Spec) (engine.Detached, error) {
	sp, err := sp.Normalize()
	if err != nil {
		return nil, err
	}
	img, err := s.inspectImage(ctx, sp.Image)
	if err != nil {
		return nil, err
	}
	ref, err := s.pushed(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	var netID string
	if sp.Network == "none" {
		if netID, err = s.noneNetwork(ctx); err != nil {
			return nil, err
		}
	}
	spec := s.serviceSpec(sp, img, ref, netID)
	constraints := slices.Clone(s.opts.Constraints)
	if len(sp.Nodes) > 0 {
		nodes, err := s.placement(ctx, sp.Nodes)
		if err != nil {
			return nil, err
		}
		constraints = append(constraints, nodes...)
	}
	if len(constraints) > 0 {
		spec.TaskTemplate.Placement = &swarm.Placement{Constraints: constraints}
	}
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := s.cli.ServiceCreate(createCtx, spec, swarm.ServiceCreateOptions{})
	cancel()
	if err != nil {
		return nil, wrapEngineErr("create service", err)
	}
	svc := &service{s: s, id: created.ID, digest: img.ID, exited: make(chan struct{}),
		logger: s.logger.With("function_id", sp.FunctionID, "function_name", sp.FunctionName, "service_id", created.ID)}
	s.watch(svc)
	return svc, nil
}

// ReadyNodes counts the cluster's nodes that are ready and active: those
// a global service, such as the node agents', runs a task on.
func (s *Swarm) ReadyNodes(ctx context.Context) (int, error) {
	nodes, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return 0, wrapEngineErr("list nodes", err)
	}
	n := 0
	for _, node := range nodes {
		if node.Status.State == swarm.NodeStateReady && node.Spec.Availability == swarm.NodeAvailabilityActive {
			n++
		}
	}
	return n, nil
}

// placement is the constraints that keep a task on the nodes named: a
// constraint cannot name a set, so every other node is excluded.
func (s *Swarm) placement(ctx context.Context, allowed []string) ([]string, error) {
	nodes, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, wrapEngineErr("list nodes", err)
	}
	var constraints []string
	for _, n := range nodes {
		if !slices.Contains(allowed, n.Description.Hostname) {
			constraints = append(constraints, "node.hostname!="+n.Description.Hostname)
		}
	}
	return constraints, nil
}

// service is one container's service.
type service struct {
	s      *Swarm
	id     string
	digest string
	logger *slog.Logger
	exited chan struct{}
	closed sync.Once

	mu     sync.Mutex
	code   int // the exit code, once the task ended
	reason string
	// unplaced is since when Swarm has said it cannot place the task.
	unplaced time.Time
}

func (c *service) ID() string              { return c.id }
func (c *service) ImageDigest() string     { return c.digest }
func (c *service) Exited() <-chan struct{} { return c.exited }

// ExitState says how the task's container ended. Swarm does not report
// the OOM killer; the init does.
func (c *service) ExitState(context.Context) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, false
}

// Reason is why the task ended without running, when Swarm said; see
// engine.Reason.
func (c *service) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Close removes the service, which stops its task.
func (c *service) Close(ctx context.Context) {
	c.closed.Do(func() {
		c.s.unwatch(c)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
			}
			if err = c.s.cli.ServiceRemove(ctx, c.id); err == nil || isNotFound(err) {
				return
			}
		}
		c.logger.Error("service not removed; RemoveManaged will collect it", "error", err)
	})
}

func (s *Swarm) watch(c *service) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watching[c.id] = c
	if !s.polling {
		s.polling = true
		go s.poll()
	}
}

// unwatch stops watching c, which is being removed. Exited is closed by
// whoever takes c out of watching, here or in update, once.
func (s *Swarm) unwatch(c *service) {
	s.watchMu.Lock()
	_, ok := s.watching[c.id]
	delete(s.watching, c.id)
	s.watchMu.Unlock()
	if ok {
		c.mu.Lock()
		c.code = -1
		c.mu.Unlock()
		close(c.exited)
	}
}

// poll reads the tasks of the services under way, and closes Exited of
// those whose task ended, until none is left.
func (s *Swarm) poll() {
	t := time.NewTicker(taskPoll)
	defer t.Stop()
	for range t.C {
		s.watchMu.Lock()
		if len(s.watching) == 0 {
			s.polling = false
			s.watchMu.Unlock()
			return
		}
		args := filters.NewArgs()
		for id := range s.watching {
			args.Add("service", id)
		}
		s.watchMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), inspectTimeout)
		tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: args})
		cancel()
		if err != nil {
			s.logger.Debug("task list failed; trying again", "error", err)
			continue
		}
		for _, task := range tasks {
			s.watchMu.Lock()
			c := s.watching[task.ServiceID]
			s.watchMu.Unlock()
			if c != nil {
				c.update(task)
			}
		}
	}
}

// update takes what Swarm says of the service's task.
func (c *service) update(task swarm.Task) {
	c.mu.Lock()
	ended := false
	switch task.Status.State {
	case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown,
		swarm.TaskStateOrphaned, swarm.TaskStateRemove:
		ended = true
		// A rejected task, say, never had a container: it did not exit 0.
		c.code = -1
		if cs := task.Status.ContainerStatus; cs != nil && cs.ContainerID != "" {
			c.code = cs.ExitCode
		} else if task.Status.Err != "" {
			c.reason = fmt.Sprintf("Swarm %s its task: %s", task.Status.State, task.Status.Err)
		}
	case swarm.TaskStatePending:
		switch {
		case task.Status.Err == "":
			c.unplaced = time.Time{}
		case c.unplaced.IsZero():
			c.unplaced = time.Now()
		case time.Since(c.unplaced) >= unplaceableWait:
			ended, c.code = true, -1
			c.reason = fmt.Sprintf("Swarm could not place its task for %v: %s", unplaceableWait, task.Status.Err)
		}
	}
	c.mu.Unlock()
	if !ended {
		return
	}
	c.s.watchMu.Lock()
	_, ok := c.s.watching[c.id]
	delete(c.s.watching, c.id)
	c.s.watchMu.Unlock()
	if ok {
		c.logger.Debug("the service's task ended", "state", task.Status.State, "node_id", task.NodeID, "exit_code", c.code, "error", task.Status.Err)
		if task.Status.Err != "" && task.Status.State != swarm.TaskStateComplete {
			c.logger.Warn("the service's task ended, or could not start", "state", task.Status.State, "node_id", task.NodeID, "error", task.Status.Err)
		}
		close(c.exited)
	}
}

// RemoveManaged removes the function services the server made that carry
// all the labels in selector; the node agents' service stays.
func (s *Swarm) RemoveManaged(ctx context.Context, selector map[string]string) (int, error) {
	list, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: managedFilter(selector)})
	if err != nil {
		return 0, wrapEngineErr("list services", err)
	}
	var (
		n    int
		errs []error
	)
	for _, svc := range list {
		if svc.Spec.Mode.Global != nil {
			continue // the node agents
		}
		switch err := s.cli.ServiceRemove(ctx, svc.ID); {
		case err == nil:
			n++
			s.logger.InfoContext(ctx, "removed leftover service", "service_id", svc.ID, "labels", svc.Spec.Labels)
		case isNotFound(err):
		default:
			errs = append(errs, wrapEngineErr("remove service "+shortID(svc.ID), err))
		}
	}
	// The tasks' containers are Swarm's, on whichever node: removing the
	// services removes them (and the agents, the exited ones).
	return n, errors.Join(errs...)
}

func hash8(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:4]
}
