package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/internal/connlimit"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/engine"
)

// serveConfig is what serve runs with: its flags, each of which takes its
// default from MINILAMBDA_<FLAG> when that is set (see envDefaults).
type serveConfig struct {
	addr, db      string
	grace         time.Duration
	maxInFlight   int
	outputLimit   int64
	maxImage      int64
	level         string
	workers       int
	maxQueue      int
	maxAttempts   int
	maxAge        time.Duration
	retryBase     time.Duration
	hotTTL        time.Duration
	pooledCPUs    float64
	token         string
	insecure      bool
	openMetrics   bool
	callbackHosts string
	maxConns      int
	init          string
	pprof         bool
	region        string
	awsKey        string
	awsSecret     string
	memBudget     int64
	runtimes      runtimeImages
	swarm         swarmConfig

	logLevel slog.Level // level, parsed
}

// parseServe fills serve's config from its command line and the
// environment, in this one place: the flags with their defaults, then
// MINILAMBDA_* over the defaults, then the command line over both.
func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlags("serve", stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8300", "address to listen on")
	fs.StringVar(&c.db, "db", defaultDB(), "the event log file (created if missing)")
	fs.DurationVar(&c.grace, "grace", 30*time.Second, "how long shutdown waits for invocations under way")
	fs.IntVar(&c.maxInFlight, "max-in-flight", runner.DefaultMaxInFlight, "invocations running at once, all functions together")
	fs.Int64Var(&c.outputLimit, "output-limit", engine.DefaultOutputLimit, "bytes of stdout, and of stderr, kept per invocation")
	fs.Int64Var(&c.maxImage, "max-image-bytes", 2<<30, "largest image upload")
	fs.StringVar(&c.level, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&c.workers, "workers", runner.DefaultWorkers, "async attempts running at once")
	fs.IntVar(&c.maxQueue, "max-queue", runner.DefaultMaxQueue, "async invocations waiting before new ones get 429")
	fs.IntVar(&c.maxAttempts, "max-attempts", runner.DefaultMaxAttempts, "attempts of an async invocation, unless its function sets max_attempts")
	fs.DurationVar(&c.maxAge, "max-event-age", runner.DefaultMaxEventAge, "async invocations older than this end FAILED")
	fs.DurationVar(&c.retryBase, "retry-base", runner.DefaultRetryBase, "wait before the second attempt; doubles after, up to 5m")
	fs.DurationVar(&c.hotTTL, "hot-idle-ttl", runner.DefaultHotIdleTTL, "how long an idle hot container is kept")
	fs.Float64Var(&c.pooledCPUs, "pooled-cpus", function.DefaultPooledCPUs, "CPU quota of hot and lambda containers whose function sets no cpus; 0: none")
	fs.StringVar(&c.token, "token", "", "API token clients send as Authorization: Bearer; required to listen beyond loopback")
	fs.BoolVar(&c.insecure, "insecure-no-auth", false, "listen beyond loopback without a token: anyone who reaches the port can run any image")
	fs.BoolVar(&c.openMetrics, "metrics-open", false, "serve /metrics without the token")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's runtime profiles under /debug/pprof/ (with the token)")
	fs.StringVar(&c.callbackHosts, "callback-hosts", "", "comma-separated hosts (or host:port) completion callbacks may go to; empty allows none")
	fs.IntVar(&c.maxConns, "max-connections", 0, "client connections served at once; 0: half the process's open-file limit")
	fs.StringVar(&c.init, "init", "", "a static build of ./runner/agent/init, the first process of every function container; built beside the log with the Go toolchain when empty")
	fs.StringVar(&c.init, "lambda-init", "", "the former name of --init")
	fs.StringVar(&c.region, "region", agent.DefaultRegion, "the AWS region lambda functions are told they run in, and the Lambda API's ARNs name")
	fs.StringVar(&c.awsKey, "aws-access-key-id", "minilambda", "the access key id Lambda API requests are signed with (checked when a token is set)")
	fs.StringVar(&c.awsSecret, "aws-secret-access-key", "", "the secret Lambda API requests are signed with; the token when empty")
	fs.Int64Var(&c.memBudget, "memory-budget", runner.DefaultMemoryBudget, "bytes of request bodies, async events under way and invocation outputs held at once; past it, requests get 429 and queued work waits")
	c.runtimes = runtimeImages(control.DefaultRuntimeImages())
	fs.Var(&c.runtimes, "runtime-image", "RUNTIME=IMAGE: the base image of zip packages on that Lambda runtime, an image in the engine (repeat, or comma-separate; provided.al2023 and provided.al2 default to scratch)")
	c.swarm.flags(fs)
	if err := envDefaults(fs); err != nil {
		return c, err
	}
	if err := parse(fs, args); err != nil {
		return c, err
	}
	if err := c.logLevel.UnmarshalText([]byte(c.level)); err != nil {
		return c, usageError{fmt.Errorf("serve: --log-level: %v", err)}
	}
	if err := c.swarm.check(); err != nil {
		return c, usageError{err}
	}
	if c.pooledCPUs < 0 || c.pooledCPUs > function.MaxCPUs || c.pooledCPUs != c.pooledCPUs {
		return c, usageError{fmt.Errorf("serve: --pooled-cpus must be between 0 (no quota) and %d, got %v", function.MaxCPUs, c.pooledCPUs)}
	}
	return c, nil
}

// runtimeImages is --runtime-image: each runtime's base image, over the
// defaults.
type runtimeImages map[string]string

func (m *runtimeImages) String() string {
	if m == nil {
		return ""
	}
	pairs := make([]string, 0, len(*m))
	for _, r := range slices.Sorted(maps.Keys(*m)) {
		pairs = append(pairs, r+"="+(*m)[r])
	}
	return strings.Join(pairs, ",")
}

func (m *runtimeImages) Set(v string) error {
	for pair := range strings.SplitSeq(v, ",") {
		runtime, img, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || runtime == "" || img == "" {
			return fmt.Errorf("%q is not RUNTIME=IMAGE", pair)
		}
		if strings.Trim(runtime, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
			return fmt.Errorf("runtime %q: use lower-case letters, digits and . - _", runtime)
		}
		if img != function.ScratchImage {
			if err := function.CheckImage(img); err != nil {
				return fmt.Errorf("runtime %s: %v", runtime, err)
			}
		}
		(*m)[runtime] = img
	}
	return nil
}

// pooledCPUs is runner.Options.PooledCPUs for --pooled-cpus, whose 0 means
// no quota.
func pooledCPUs(flag float64) float64 {
	if flag == 0 {
		return -1
	}
	return flag
}

// prepareProcess sets up what serve's process needs of its surroundings:
// the temporary directory, which holds the function containers' sockets (a
// server in a container is told one in its state volume, which may not
// exist yet), and the collector, for a heap of about the memory budget
// (gc.go).
func prepareProcess(c serveConfig) {
	if dir := os.Getenv("TMPDIR"); dir != "" {
		_ = os.MkdirAll(dir, 0o700)
	}
	tuneServeGC(c.memBudget)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	if err := checkLoopback(c.addr); err != nil {
		switch {
		case c.token != "":
		case c.insecure:
			logger.Warn("LISTENING BEYOND LOOPBACK WITHOUT AN API TOKEN: anyone who can reach " + c.addr + " can run any image on this machine")
		default:
			return usageError{err}
		}
	}

	if err := os.MkdirAll(filepath.Dir(c.db), 0o700); err != nil {
		return err
	}
	prepareProcess(c)
	m := metrics.New()
	log, err := openLog(c.db, eventlog.Options{Projector: projections.Projector{}, Logger: logger, OnCommit: m.Commit, OnUnwritable: m.CommitRefused})
	if err != nil {
		return err
	}
	defer log.Close()
	driver, gateway, err := openEngine(c, logger)
	if err != nil {
		return err
	}
	defer driver.Close()
	svc, err := runner.New(runner.Options{
		Log: log, Engine: driver, Logger: logger, Metrics: m,
		Instance: instanceID(c.db), MaxInFlight: c.maxInFlight, OutputLimit: c.outputLimit,
		Workers: c.workers, MaxQueue: c.maxQueue, MaxAttempts: c.maxAttempts, MaxEventAge: c.maxAge,
		RetryBase: c.retryBase, CallbackHosts: splitList(c.callbackHosts), HotIdleTTL: c.hotTTL, PooledCPUs: pooledCPUs(c.pooledCPUs),
		MemoryBudget: c.memBudget,
		Init:         c.init, InitDir: filepath.Join(filepath.Dir(c.db), "init"), Region: c.region,
		Gateway: gateway,
	})
	if err != nil {
		return err
	}
	ctl, err := control.New(control.Options{Log: log, Engine: driver, Runner: svc, Views: svc.Views(), RuntimeImages: c.runtimes})
	if err != nil {
		return err
	}
	// The port first: a server that cannot have it must not recover, run or
	// record anything.
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	// Past the limit, connections wait in the kernel's backlog: the other
	// half of the descriptors stays for the engine, the log and uploads.
	// With a token, a quarter of the slots stays for clients that show it.
	if c.maxConns <= 0 {
		c.maxConns = defaultMaxConnections()
	}
	strangerConns := c.maxConns
	if c.token != "" {
		strangerConns -= c.maxConns / 4
	}
	ln = connlimit.New(ln, c.maxConns, strangerConns)
	spool, err := cleanSpool(c.db)
	if err != nil {
		return err
	}
	api := lambdahttp.New(lambdahttp.Options{
		Functions: ctl, Invoker: svc, Images: ctl, Status: svc, Views: svc.Views(), Versions: writeRead{ctl, svc, svc.Views()}, Schedules: writeRead{ctl, svc, svc.Views()}, Events: log, Audit: log, Budget: svc,
		Logger: logger, Registry: m.Registry, MaxImageBytes: c.maxImage, SpoolDir: spool,
		Token: c.token, OpenMetrics: c.openMetrics, Profiling: c.pprof,
		AWSAccessKeyID: c.awsKey, AWSSecretAccessKey: cmp.Or(c.awsSecret, c.token), Region: c.region,
		StrangerBytes: c.memBudget / 4, MaxInFlight: c.maxInFlight,
	})
	srv := &http.Server{
		Handler: api,
		// Bodies are paced by the handler (at least 64 KiB/s), headers
		// here: a request is a stranger's until its headers show the
		// token, so they come within 5 s. An idle connection closes after
		// two minutes.
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext:       lambdahttp.ConnContext,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Event streams never end by themselves: shutdown ends them.
	srv.RegisterOnShutdown(api.EndStreams)
	return runServer(ctx, c, logger, log, svc, ln, srv)
}

// runServer runs what serve wired: it recovers what an earlier run left
// under way, starts the runner and serves on ln until the server fails or
// ctx ends (SIGTERM); then it shuts down in reverse order of start. The
// caller closes the listener, the engine and, last, the log.
func runServer(ctx context.Context, c serveConfig, logger *slog.Logger, log *eventlog.Log, svc *runner.Service, ln net.Listener, srv *http.Server) error {
	if err := svc.Recover(ctx); err != nil {
		// The engine may be down now and back later; the server serves what
		// it can meanwhile.
		logger.Warn("start-up recovery incomplete", "err", err)
	}
	// The signal's context: at SIGTERM the workers take no more queued work.
	svc.Start(ctx)
	// Lambda functions' init is built now, not by their first invocation.
	go svc.PrepareInit(ctx)
	memoryReturned := make(chan struct{})
	go func() {
		defer close(memoryReturned)
		returnMemory(ctx, log.DropMapped)
	}()
	defer func() { <-memoryReturned }()

	head, hash := log.Head()
	logger.Info("serving", "addr", ln.Addr().String(), "db", c.db, "events", head, "head", hash.String(), "max_connections", c.maxConns)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// The queue stopped with ctx. Stop accepting, let invocations under way
	// answer, then close the runner and, last, the log they write to.
	logger.Info("shutting down", "grace", c.grace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("grace period over; cutting off remaining requests", "err", err)
		srv.Close()
	}
	// Queued async work stays in the log for the next start.
	svc.Stop(sctx)
	svc.Wait()
	<-served
	logger.Info("stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkLoopback refuses addresses beyond this machine: the API runs any
// image it is asked to, so it must not be reachable from the network
// without authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("serve: --addr %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("serve: --addr beyond loopback needs an API token (--token or MINILAMBDA_TOKEN), since anyone who can reach the API can run any image; --insecure-no-auth opts out")
}

// instanceID names this server's containers after its event log, so that
// two servers on one engine never remove each other's.
func instanceID(db string) string {
	abs, err := filepath.Abs(db)
	if err != nil {
		abs = db
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6])
}

// defaultMaxConnections is half the process's open-file limit (Go raises
// the soft limit to the hard one at start), and at least 16.
func defaultMaxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<20 {
		return 1 << 19
	}
	return max(16, int(lim.Cur/2))
}

// cleanSpool returns the directory where the server of the log at db
// spools image uploads, emptied of what an earlier run left (one killed
// mid-upload). It sits beside the log, on the disk the operator chose for
// the server's state, as a 0700 directory of its own named after the
// instance: no other user can read the uploads, and two servers with their
// logs in one directory never remove each other's.
func cleanSpool(db string) (string, error) {
	dir := filepath.Join(filepath.Dir(db), "spool-"+instanceID(db))
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("spool directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool directory: %w", err)
	}
	return dir, nil
}

// writeRead serves the API's published versions, aliases and schedules:
// the control plane writes them, the views read them, and the runner says
// when a schedule fires next.
type writeRead struct {
	*control.Plane
	*runner.Service
	*projections.Views
}
