// Package agent is what the HTTP handlers submit work to: it validates
// function specs, appends the events that record every change, and runs
// invocations through the runner, recording each step in the event log
// before it answers. It never exposes Docker to its callers.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/oklog/ulid/v2"
)

var (
	// ErrInvalid wraps what is wrong with a request; the message says it in
	// words the user can act on.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict means a name is taken or a function changed meanwhile.
	ErrConflict = errors.New("conflict")
	// ErrBusy means the function, or the server, runs as many invocations
	// as it may.
	ErrBusy = errors.New("concurrency limit reached")
)

// Runner is what the agent needs of the Docker runner.
type Runner interface {
	Run(ctx context.Context, s runner.Spec) (runner.Result, error)
	LoadImage(ctx context.Context, r io.Reader) ([]string, error)
	ListImages(ctx context.Context) ([]string, error)
	TagIDs(ctx context.Context) (map[string]string, error)
	StartHot(ctx context.Context, s runner.Spec) (*runner.Hot, error)
	Prestart(ctx context.Context, s runner.Spec) (*runner.Prepared, error)
	Ping(ctx context.Context) error
	RemoveManaged(ctx context.Context, selector map[string]string) (int, error)
}

var _ Runner = (*runner.Docker)(nil)

// Options configure New.
type Options struct {
	Log     *eventlog.Log
	Runner  Runner
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Instance labels this server's containers, so that start-up cleanup
	// removes only its own.
	Instance string
	// MaxInFlight bounds the invocations running at once, all functions
	// together; 64 when zero.
	MaxInFlight int
	// OutputLimit caps stdout and stderr of an invocation, each;
	// runner.DefaultOutputLimit when zero.
	OutputLimit int64

	// Async invocations; the Default* constants when zero.
	Workers     int           // attempts running at once from the queue
	MaxQueue    int           // queued async invocations before Enqueue says ErrBusy
	MaxAttempts int           // attempts of an async invocation, unless its function says
	MaxEventAge time.Duration // an async invocation older than this ends FAILED
	RetryBase   time.Duration // the wait before the second attempt, doubling after
	RetryMax    time.Duration // the longest wait between attempts
	// CallbackHosts are the hosts (host or host:port) callbacks may go to;
	// none allows no callbacks.
	CallbackHosts []string
	// CallbackTries bounds the deliveries of one callback; 3 when zero.
	CallbackTries int
	// HotIdleTTL is how long an idle hot container is kept;
	// DefaultHotIdleTTL when zero.
	HotIdleTTL time.Duration
}

// Agent runs invocations and records functions and invocations in the log.
type Agent struct {
	log     *eventlog.Log
	views   *projections.Views
	run     Runner
	logger  *slog.Logger
	metrics *metrics.Metrics
	opts    Options

	// wg counts invocations under way, so shutdown can wait for them to be
	// recorded.
	wg sync.WaitGroup

	mu       sync.Mutex
	inFlight int
	running  map[string]int // by function id

	qmu            sync.Mutex
	queue          []*item // async invocations waiting, in order of arrival
	wake           chan struct{}
	stopWorkers    context.CancelFunc
	workers        sync.WaitGroup
	attemptCtx     context.Context // async attempts; cancelled when Stop's grace is over
	cancelAttempts context.CancelFunc
	callbacks      sync.WaitGroup
	client         *http.Client

	hmu        sync.Mutex
	pools      map[string]*pool  // hot containers by function id
	spares     map[string]*spare // prestarted cold containers by function id
	preparing  map[string]bool   // functions whose spare is on its way
	hotStopped bool
	hotwg      sync.WaitGroup
}

// LabelInstance is the container label naming the server that created it.
const LabelInstance = "minilambda.instance"

// New returns an agent over the log and runner in opts.
func New(opts Options) (*Agent, error) {
	if opts.Log == nil || opts.Runner == nil {
		return nil, errors.New("agent: a log and a runner are required")
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = 64
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opts.Workers, DefaultWorkers)
	def(&opts.MaxQueue, DefaultMaxQueue)
	def(&opts.MaxAttempts, DefaultMaxAttempts)
	def(&opts.CallbackTries, 3)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&opts.MaxEventAge, DefaultMaxEventAge)
	defDur(&opts.RetryBase, DefaultRetryBase)
	defDur(&opts.RetryMax, DefaultRetryMax)
	defDur(&opts.HotIdleTTL, DefaultHotIdleTTL)
	a := &Agent{
		log: opts.Log, views: projections.NewViews(opts.Log), run: opts.Runner,
		logger: logger.With("subsystem", "agent"), metrics: opts.Metrics, opts: opts,
		running:   make(map[string]int),
		pools:     make(map[string]*pool),
		spares:    make(map[string]*spare),
		preparing: make(map[string]bool),
		wake:      make(chan struct{}, 1),
		client: &http.Client{
			Timeout: 10 * time.Second,
			// A redirect could lead a callback to a host nobody allowed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	a.attemptCtx, a.cancelAttempts = context.WithCancel(context.Background())
	return a, nil
}

// Views is the read side the agent writes through.
func (a *Agent) Views() *projections.Views { return a.views }

// Register validates spec, fills its defaults and records a new function.
func (a *Agent) Register(ctx context.Context, spec projections.FunctionSpec) (projections.Function, error) {
	spec, err := Normalize(spec)
	if err != nil {
		return projections.Function{}, err
	}
	if err := a.checkCallback(spec.CallbackURL); err != nil {
		return projections.Function{}, err
	}
	id := ulid.Make().String()
	e, err := projections.NewEvent(projections.TypeFunctionRegistered, id, "", projections.FunctionRegistered{
		V: 1, FunctionSpec: spec, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		return projections.Function{}, err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return projections.Function{}, err
	}
	return a.views.Function(id)
}

// Patch is a change to a function: the fields that are set replace the
// function's.
type Patch struct {
	Name        *string            `json:"name"`
	Image       *string            `json:"image"`
	Timeout     *int               `json:"timeout"`
	MemoryMB    *int               `json:"memory_mb"`
	CPUs        *float64           `json:"cpus"`
	Env         *map[string]string `json:"env"`
	Mode        *string            `json:"mode"`
	Concurrency *int               `json:"concurrency"`
	Network     *string            `json:"network"`
	MaxAttempts *int               `json:"max_attempts"`
	ReadOnly    *bool              `json:"read_only"`
	CallbackURL *string            `json:"callback_url"`
}

func (p Patch) apply(s projections.FunctionSpec) projections.FunctionSpec {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&s.Name, p.Name)
	set(&s.Image, p.Image)
	set(&s.Mode, p.Mode)
	set(&s.Network, p.Network)
	set(&s.CallbackURL, p.CallbackURL)
	if p.MaxAttempts != nil {
		s.MaxAttempts = *p.MaxAttempts
	}
	if p.ReadOnly != nil {
		s.ReadOnly = *p.ReadOnly
	}
	if p.Timeout != nil {
		s.Timeout = *p.Timeout
	}
	if p.MemoryMB != nil {
		s.MemoryMB = *p.MemoryMB
	}
	if p.CPUs != nil {
		s.CPUs = *p.CPUs
	}
	if p.Env != nil {
		s.Env = *p.Env
	}
	if p.Concurrency != nil {
		s.Concurrency = *p.Concurrency
	}
	return s
}

// Update applies patch to the live function ref and records the new
// version.
func (a *Agent) Update(ctx context.Context, ref string, patch Patch) (projections.Function, error) {
	f, err := a.views.Function(ref)
	if err != nil {
		return f, err
	}
	spec, err := Normalize(patch.apply(f.FunctionSpec))
	if err != nil {
		return f, err
	}
	if err := a.checkCallback(spec.CallbackURL); err != nil {
		return f, err
	}
	e, err := projections.NewEvent(projections.TypeFunctionUpdated, f.ID, "", projections.FunctionUpdated{
		V: 1, Version: f.Version + 1, FunctionSpec: spec,
	})
	if err != nil {
		return f, err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		cur, err := projections.FunctionByRef(r, f.ID)
		if err != nil {
			return err
		}
		if cur.Version != f.Version {
			return fmt.Errorf("%w: function %s changed meanwhile; try again", ErrConflict, f.Name)
		}
		if spec.Name != f.Name && projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return f, err
	}
	a.retirePool(f.ID, "the function was updated")
	return a.views.Function(f.ID)
}

// Delete records the removal of the live function ref. Its invocations
// stay readable.
func (a *Agent) Delete(ctx context.Context, ref string) error {
	f, err := a.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewEvent(projections.TypeFunctionDeleted, f.ID, "", projections.FunctionDeleted{V: 1})
	if err != nil {
		return err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.FunctionByRef(r, f.ID)
		return err
	}, e)
	if err == nil {
		a.retirePool(f.ID, "the function was deleted")
	}
	return err
}

// Health reports whether the Docker engine answers.
func (a *Agent) Health(ctx context.Context) error { return a.run.Ping(ctx) }

// Head returns the event log's head, for operators to keep elsewhere.
func (a *Agent) Head() (uint64, eventlog.Hash) { return a.log.Head() }

// TypeImageLoaded is the event recording an image upload.
const TypeImageLoaded = "image.loaded"

// ImageLoaded is the payload of image.loaded, and the answer to an
// upload.
type ImageLoaded struct {
	V      int      `json:"v"`
	Loaded []string `json:"loaded"`
	// Replaced are the tags that named another image before the load.
	Replaced []ReplacedTag `json:"replaced,omitempty"`
}

// ReplacedTag is a tag an upload moved to another image.
type ReplacedTag struct {
	Tag        string `json:"tag"`
	PreviousID string `json:"previous_id"`
	ID         string `json:"id"`
}

// LoadImage loads a `docker save` archive into the engine and records
// what it loaded, and which tags it took from other images.
func (a *Agent) LoadImage(ctx context.Context, r io.Reader) (ImageLoaded, error) {
	before, err := a.run.TagIDs(ctx)
	if err != nil {
		return ImageLoaded{}, err
	}
	tags, err := a.run.LoadImage(ctx, r)
	if err != nil {
		return ImageLoaded{}, err
	}
	res := ImageLoaded{V: 1, Loaded: tags}
	if after, err := a.run.TagIDs(ctx); err == nil {
		for _, tag := range tags {
			if prev, ok := before[tag]; ok && after[tag] != "" && prev != after[tag] {
				res.Replaced = append(res.Replaced, ReplacedTag{Tag: tag, PreviousID: prev, ID: after[tag]})
			}
		}
	}
	e, err := projections.NewEvent(TypeImageLoaded, "", "", res)
	if err != nil {
		return res, err
	}
	if _, err := a.log.Append(context.WithoutCancel(ctx), e); err != nil {
		return res, err
	}
	return res, nil
}

// ListImages lists the image tags the engine has.
func (a *Agent) ListImages(ctx context.Context) ([]string, error) { return a.run.ListImages(ctx) }

// Errors from the runner that callers map to answers.
var (
	// ErrEngineUnavailable means the Docker engine does not answer.
	ErrEngineUnavailable = runner.ErrEngineUnavailable
	// ErrBadImage means an uploaded archive is not one the engine can load.
	ErrBadImage = runner.ErrBadImage
)
