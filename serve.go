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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/internal/connlimit"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/minilambda/minilambda/runner/lambda"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(env(name, "")); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(env(name, "")); err == nil {
		return v
	}
	return def
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	addr := fs.String("addr", env("ADDR", "127.0.0.1:8300"), "address to listen on")
	db := fs.String("db", env("DB", defaultDB()), "the event log file (created if missing)")
	grace := fs.Duration("grace", envDuration("GRACE", 30*time.Second), "how long shutdown waits for invocations under way")
	maxInFlight := fs.Int("max-in-flight", envInt("MAX_IN_FLIGHT", runner.DefaultMaxInFlight), "invocations running at once, all functions together")
	outputLimit := fs.Int64("output-limit", int64(envInt("OUTPUT_LIMIT", engine.DefaultOutputLimit)), "bytes of stdout, and of stderr, kept per invocation")
	maxImage := fs.Int64("max-image-bytes", int64(envInt("MAX_IMAGE_BYTES", 2<<30)), "largest image upload")
	level := fs.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error")
	workers := fs.Int("workers", envInt("WORKERS", runner.DefaultWorkers), "async attempts running at once")
	maxQueue := fs.Int("max-queue", envInt("MAX_QUEUE", runner.DefaultMaxQueue), "async invocations waiting before new ones get 429")
	maxAttempts := fs.Int("max-attempts", envInt("MAX_ATTEMPTS", runner.DefaultMaxAttempts), "attempts of an async invocation, unless its function sets max_attempts")
	maxAge := fs.Duration("max-event-age", envDuration("MAX_EVENT_AGE", runner.DefaultMaxEventAge), "async invocations older than this end FAILED")
	retryBase := fs.Duration("retry-base", envDuration("RETRY_BASE", runner.DefaultRetryBase), "wait before the second attempt; doubles after, up to 5m")
	hotTTL := fs.Duration("hot-idle-ttl", envDuration("HOT_IDLE_TTL", runner.DefaultHotIdleTTL), "how long an idle hot container is kept")
	token := fs.String("token", env("TOKEN", ""), "API token clients send as Authorization: Bearer; required to listen beyond loopback")
	insecure := fs.Bool("insecure-no-auth", env("INSECURE_NO_AUTH", "") == "true", "listen beyond loopback without a token: anyone who reaches the port can run any image")
	openMetrics := fs.Bool("metrics-open", env("METRICS_OPEN", "") == "true", "serve /metrics without the token")
	callbackHosts := fs.String("callback-hosts", env("CALLBACK_HOSTS", ""), "comma-separated hosts (or host:port) completion callbacks may go to; empty allows none")
	maxConns := fs.Int("max-connections", envInt("MAX_CONNECTIONS", 0), "client connections served at once; 0: half the process's open-file limit")
	// The temporary directory holds lambda containers' sockets; a server
	// in a container is told one in its state volume, which may not exist
	// yet.
	if dir := os.Getenv("TMPDIR"); dir != "" {
		_ = os.MkdirAll(dir, 0o700)
	}
	lambdaInit := fs.String("lambda-init", env("LAMBDA_INIT", ""), "a static build of ./runner/lambda/lambdainit for lambda functions' containers; built beside the log with the Go toolchain when empty")
	region := fs.String("region", env("REGION", lambda.DefaultRegion), "the AWS region lambda functions are told they run in, and the Lambda API's ARNs name")
	awsKey := fs.String("aws-access-key-id", env("AWS_ACCESS_KEY_ID", "minilambda"), "the access key id Lambda API requests are signed with (checked when a token is set)")
	awsSecret := fs.String("aws-secret-access-key", env("AWS_SECRET_ACCESS_KEY", ""), "the secret Lambda API requests are signed with; the token when empty")
	memBudget := fs.Int64("memory-budget", int64(envInt("MEMORY_BUDGET", runner.DefaultMemoryBudget)), "bytes of request bodies, async events under way and invocation outputs held at once; past it, requests get 429 and queued work waits")
	if err := parse(fs, args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Errorf("serve: --log-level: %v", err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if err := checkLoopback(*addr); err != nil {
		switch {
		case *token != "":
		case *insecure:
			logger.Warn("LISTENING BEYOND LOOPBACK WITHOUT AN API TOKEN: anyone who can reach " + *addr + " can run any image on this machine")
		default:
			return usageError{err}
		}
	}

	if err := os.MkdirAll(filepath.Dir(*db), 0o700); err != nil {
		return err
	}
	tuneServeGC(*memBudget)
	m := metrics.New()
	log, err := openLog(*db, eventlog.Options{Projector: projections.Projector{}, Logger: logger, OnCommit: m.Commit, OnUnwritable: m.CommitRefused})
	if err != nil {
		return err
	}
	defer log.Close()
	driver, err := docker.NewFromEnv(logger)
	if err != nil {
		return err
	}
	defer driver.Close()
	svc, err := runner.New(runner.Options{
		Log: log, Engine: driver, Logger: logger, Metrics: m,
		Instance: instanceID(*db), MaxInFlight: *maxInFlight, OutputLimit: *outputLimit,
		Workers: *workers, MaxQueue: *maxQueue, MaxAttempts: *maxAttempts, MaxEventAge: *maxAge,
		RetryBase: *retryBase, CallbackHosts: splitList(*callbackHosts), HotIdleTTL: *hotTTL,
		MemoryBudget: *memBudget,
		LambdaInit:   *lambdaInit, LambdaInitDir: filepath.Join(filepath.Dir(*db), "lambda-init"), Region: *region,
	})
	if err != nil {
		return err
	}
	ctl, err := control.New(control.Options{Log: log, Engine: driver, Runner: svc, Views: svc.Views()})
	if err != nil {
		return err
	}
	// The port first: a server that cannot have it must not recover, run or
	// record anything.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	// Past the limit, connections wait in the kernel's backlog: the other
	// half of the descriptors stays for the engine, the log and uploads.
	// With a token, a quarter of the slots stays for clients that show it.
	if *maxConns <= 0 {
		*maxConns = defaultMaxConnections()
	}
	strangerConns := *maxConns
	if *token != "" {
		strangerConns -= *maxConns / 4
	}
	ln = connlimit.New(ln, *maxConns, strangerConns)
	spool, err := cleanSpool(*db)
	if err != nil {
		return err
	}
	if err := svc.Recover(ctx); err != nil {
		// The engine may be down now and back later; the server serves what
		// it can meanwhile.
		logger.Warn("start-up recovery incomplete", "err", err)
	}
	// The signal's context: at SIGTERM the workers take no more queued work.
	svc.Start(ctx)
	// Lambda functions' init is built now, not by their first invocation.
	go svc.PrepareLambda(ctx)
	memoryReturned := make(chan struct{})
	go func() {
		defer close(memoryReturned)
		returnMemory(ctx, log.DropMapped)
	}()
	defer func() { <-memoryReturned }()

	api := lambdahttp.New(lambdahttp.Options{
		Functions: ctl, Invoker: svc, Images: ctl, Status: svc, Views: svc.Views(), Versions: writeRead{ctl, svc, svc.Views()}, Schedules: writeRead{ctl, svc, svc.Views()}, Events: log, Audit: log, Budget: svc,
		Logger: logger, Registry: m.Registry, MaxImageBytes: *maxImage, SpoolDir: spool,
		Token: *token, OpenMetrics: *openMetrics,
		AWSAccessKeyID: *awsKey, AWSSecretAccessKey: cmp.Or(*awsSecret, *token), Region: *region,
		StrangerBytes: *memBudget / 4,
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
	head, hash := log.Head()
	logger.Info("serving", "addr", ln.Addr().String(), "db", *db, "events", head, "head", hash.String(), "max_connections", *maxConns)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// The queue stopped with ctx. Stop accepting, let invocations under way
	// answer, then close the runner and, last, the log they write to.
	logger.Info("shutting down", "grace", grace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *grace)
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
