package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

// LabelInstance is the container label naming the server that created a
// container, so that start-up cleanup removes only its own.
const LabelInstance = "minilambda.instance"

// Defaults of the settings in Options.
const (
	DefaultMaxInFlight   = 64
	DefaultWorkers       = 4
	DefaultMaxQueue      = 100000
	DefaultMaxAttempts   = 3 // as Lambda's two retries
	DefaultMaxEventAge   = 6 * time.Hour
	DefaultRetryBase     = 2 * time.Second
	DefaultRetryMax      = 5 * time.Minute
	DefaultCallbackTries = 3
	DefaultHotIdleTTL    = 5 * time.Minute
)

// Options configure New.
type Options struct {
	Log    *eventlog.Log
	Engine engine.Driver
	// Logger receives what goes wrong in the background; nil discards.
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Instance labels this server's containers (LabelInstance), so that
	// start-up cleanup removes only its own.
	Instance string
	// MaxInFlight bounds the invocations running at once, all functions
	// together.
	MaxInFlight int
	// OutputLimit caps stdout and stderr of an invocation, each;
	// engine.DefaultOutputLimit when zero.
	OutputLimit int64

	// Async invocations.
	Workers     int           // attempts running at once from the queue
	MaxQueue    int           // queued async invocations before Enqueue says ErrBusy
	MaxAttempts int           // attempts of an async invocation, unless its function says
	MaxEventAge time.Duration // an async invocation older than this ends FAILED
	RetryBase   time.Duration // the wait before the second attempt, doubling after
	RetryMax    time.Duration // the longest wait between attempts
	// CallbackHosts are the hosts (host or host:port) callbacks may go to;
	// none allows no callbacks.
	CallbackHosts []string
	// CallbackTries bounds the deliveries of one callback.
	CallbackTries int
	// HotIdleTTL is how long an idle hot container, or an unused spare, is
	// kept.
	HotIdleTTL time.Duration
	// PooledCPUs is the CPU quota of hot and lambda containers whose
	// function sets no cpus: function.DefaultPooledCPUs when zero, none
	// when negative.
	PooledCPUs float64
	// MemoryBudget bounds the bytes of request bodies, async events under
	// way and invocation outputs held at once (see budget.go).
	MemoryBudget int64

	// Init is a static build of the init every function container runs
	// as its first process; when it is empty, agent.BuildInit makes one in
	// InitDir (DefaultInitDir when that is empty too). Region is the one
	// lambda functions are told they run in.
	Init    string
	InitDir string
	Region  string
	// Gateway, with a cluster's engine, relays the containers' sockets
	// from the node agents.
	Gateway *agent.Gateway
}

// DefaultInitDir is where a service given no init builds one: a
// directory of the system's temporary one, shared by the servers of this
// machine's user; each build is named after its source's hash.
func DefaultInitDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("minilambda-init-%d", os.Getuid()))
}

// withDefaults fills in the zero settings.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxInFlight, DefaultMaxInFlight)
	def(&o.Workers, DefaultWorkers)
	def(&o.MaxQueue, DefaultMaxQueue)
	def(&o.MaxAttempts, DefaultMaxAttempts)
	def(&o.CallbackTries, DefaultCallbackTries)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&o.MaxEventAge, DefaultMaxEventAge)
	defDur(&o.RetryBase, DefaultRetryBase)
	defDur(&o.RetryMax, DefaultRetryMax)
	defDur(&o.HotIdleTTL, DefaultHotIdleTTL)
	if o.OutputLimit == 0 {
		o.OutputLimit = engine.DefaultOutputLimit
	}
	if o.MemoryBudget == 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	switch {
	case o.PooledCPUs == 0:
		o.PooledCPUs = function.DefaultPooledCPUs
	case o.PooledCPUs < 0:
		o.PooledCPUs = 0
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Service is the data plane: it runs invocations and records them in the
// event log, and fires schedules; it reads functions from the views, which
// the control plane (runner/control) records. Its methods are safe for
// concurrent use.
type Service struct {
	log     *eventlog.Log
	views   *projections.Views
	sched   scheduler
	engine  engine.Driver
	logger  *slog.Logger
	metrics *metrics.Metrics
	opts    Options

	// life is the context of the work the service does on its own
	// (prestarting spares, stopping containers, callbacks); Wait ends it.
	// draining ends when Wait begins: records of that work are then tried
	// once, not until the log takes them.
	life         context.Context
	endLife      context.CancelFunc
	draining     context.Context
	stopDraining context.CancelFunc

	// invoking counts synchronous invocations under way, so that Wait can
	// let them be recorded; recording counts events persistLater has yet to
	// land.
	invoking  sync.WaitGroup
	recording sync.WaitGroup

	limits    limits
	budget    budget
	queue     queue
	pools     pools
	spares    spares
	callbacks callbacks
	// agent starts every function container with the init as its first
	// process, and carries its data: events, results, logs, and the
	// Runtime API of lambda functions.
	agent *agent.Host

	// workers run queued attempts and the reaper; attempts is their
	// context, which Stop cancels when its grace is over.
	stopWorkers    context.CancelFunc
	workers        sync.WaitGroup
	attempts       context.Context
	cancelAttempts context.CancelFunc
}

// New returns a service over the log and the engine in opts. It starts
// nothing: Recover settles what an earlier run left, Start runs the queue.
func New(opts Options) (*Service, error) {
	if opts.Log == nil || opts.Engine == nil {
		return nil, errors.New("runner: a log and an engine are required")
	}
	opts = opts.withDefaults()
	s := &Service{
		log: opts.Log, views: projections.NewViews(opts.Log), engine: opts.Engine,
		logger: opts.Logger.With("subsystem", "runner"), metrics: opts.Metrics, opts: opts,
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.draining, s.stopDraining = context.WithCancel(s.life)
	s.attempts, s.cancelAttempts = context.WithCancel(s.life)
	s.limits.init(opts.MaxInFlight)
	s.budget.init(opts.MemoryBudget, opts.Metrics.BudgetUsed, opts.Metrics.BudgetRefused)
	s.queue.init(opts.Metrics.QueueDepth)
	s.pools.init(s)
	s.spares.init(s)
	s.callbacks.init(s)
	s.sched = scheduler{wake: make(chan struct{}, 1), cursors: map[string]time.Time{}, nexts: map[string]func(time.Time) time.Time{}}
	if opts.Init == "" && opts.InitDir == "" {
		opts.InitDir = DefaultInitDir()
	}
	host, err := agent.New(agent.Options{
		Engine: opts.Engine, Init: opts.Init, InitDir: opts.InitDir, Region: opts.Region,
		Instance: opts.Instance, Logger: opts.Logger, Gateway: opts.Gateway,
	})
	if err != nil {
		return nil, err
	}
	s.agent = host
	return s, nil
}

// PrepareInit makes ready what every function container needs (a build
// of the init), so that the first invocation does not wait for it.
func (s *Service) PrepareInit(ctx context.Context) error {
	_, err := s.agent.Init(ctx)
	return err
}

// Views is the read side the service writes through.
func (s *Service) Views() *projections.Views { return s.views }

// Health reports whether the engine answers.
func (s *Service) Health(ctx context.Context) error { return s.engine.Ping(ctx) }

// Head returns the event log's head, for operators to keep elsewhere.
func (s *Service) Head() (uint64, eventlog.Hash) { return s.log.Head() }

// Start launches the async workers and the reaper of idle containers.
// The workers stop taking queued work the moment ctx ends or Stop is
// called; a server passes the context its shutdown signal ends, so that
// no queued invocation starts once shutdown has begun.
func (s *Service) Start(ctx context.Context) {
	started := time.Now()
	ctx, s.stopWorkers = context.WithCancel(ctx)
	s.workers.Add(2)
	go func() {
		defer s.workers.Done()
		s.reap(ctx)
	}()
	go func() {
		defer s.workers.Done()
		s.runSchedules(ctx, started)
	}()
	for range s.opts.Workers {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			s.work(ctx)
		}()
	}
}

// reap stops hot containers and spares idle longer than the TTL.
func (s *Service) reap(ctx context.Context) {
	tick := time.NewTicker(min(s.opts.HotIdleTTL/2, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.spares.reap(now)
			s.pools.reap(now)
		}
	}
}

// Stop stops taking queued work, lets attempts under way and callbacks
// finish until ctx ends, then kills what still runs: those attempts are
// recorded as failed and retried at the next start, those callbacks as
// not delivered. It returns once everything is recorded.
func (s *Service) Stop(ctx context.Context) {
	if s.stopWorkers != nil {
		s.stopWorkers()
	}
	waitOrCancel(ctx, &s.workers, s.cancelAttempts)
	s.callbacks.stop(ctx)
}

// waitOrCancel waits for wg, calling cancel when ctx ends first.
func waitOrCancel(ctx context.Context, wg *sync.WaitGroup, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
	}
}

// Wait returns once no synchronous invocation is under way and every hot
// or prestarted container has stopped. Last, it removes whatever container
// of this server is still there: one whose removal failed while the engine
// was unreachable would otherwise wait for the next start.
func (s *Service) Wait() {
	s.stopDraining()
	s.invoking.Wait()
	s.pools.stopAll()
	s.spares.stopAll()
	s.pools.wg.Wait()
	s.spares.wg.Wait()
	s.agent.Close(s.life)
	// What the log would still not take is settled by the next start.
	defer s.recording.Wait()
	defer s.endLife()
	// Cleanup that must outlive every request: its own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.life), time.Minute)
	defer cancel()
	if n, err := s.engine.RemoveManaged(ctx, map[string]string{LabelInstance: s.opts.Instance}); err != nil {
		s.logger.Warn("cannot remove leftover containers", "err", err)
	} else if n > 0 {
		s.logger.Info("removed leftover containers", "count", n)
	}
}
