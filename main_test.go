package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	bolt "go.etcd.io/bbolt"
)

func runCmd(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestMigrateDumpAudit(t *testing.T) {
	db := filepath.Join(t.TempDir(), "data", "events.db")
	legacy := filepath.Join("migrate", "testdata", "functions.json")
	out, _, err := runCmd(t, "migrate", "--db", db, "--from", legacy)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "3 imported, 0 already present") || !strings.Contains(out, `"test-lambda-9f2b7c1e": the name "test-lambda" was taken`) {
		t.Fatalf("migrate said %q", out)
	}
	if out, _, err := runCmd(t, "migrate", "--db", db, "--from", legacy); err != nil || !strings.Contains(out, "0 imported, 3 already present") {
		t.Fatalf("second migrate: %q %v", out, err)
	}

	out, _, err = runCmd(t, "dump", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("dump printed %d lines: %q", len(lines), out)
	}
	var e struct {
		Seq        uint64
		Type       string
		FunctionID string `json:"function_id"`
		Data       projections.FunctionRegistered
		Hash       string
	}
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Seq != 1 || e.Type != "function.registered" || !e.Data.Imported || len(e.Hash) != 64 {
		t.Fatalf("dump line %q: %+v %v", lines[0], e, err)
	}
	out, _, _ = runCmd(t, "dump", "--db", db, "--from", "3")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("--from 3 printed %q", out)
	}
	out, _, _ = runCmd(t, "dump", "--db", db, "--function", "5ac94553-cd05-4cc0-b657-acae0c6559e1")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "5ac94553") {
		t.Errorf("--function printed %q", out)
	}
	out, _, _ = runCmd(t, "dump", "--db", db, "--type", "invocation.queued")
	if out != "" {
		t.Errorf("--type printed %q", out)
	}

	out, _, err = runCmd(t, "audit", "--db", db)
	if err != nil || !strings.HasPrefix(out, "audit ok: 3 events") {
		t.Fatalf("audit: %q %v", out, err)
	}

	// Alter one byte of seq 2's payload: audit must fail and name seq 2.
	bdb, err := bolt.Open(db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		v := append([]byte(nil), b.Get(k)...)
		i := bytes.Index(v, []byte("test-lambda"))
		v[i] = 'T'
		return b.Put(k, v)
	})
	bdb.Close()
	_, _, err = runCmd(t, "audit", "--db", db)
	if err == nil || !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("audit of a tampered log: %v", err)
	}
}

func TestMigrateBadFileWritesNothing(t *testing.T) {
	db := filepath.Join(t.TempDir(), "events.db")
	_, _, err := runCmd(t, "migrate", "--db", db, "--from", filepath.Join("migrate", "testdata", "bad-timestamp.json"))
	if err == nil || !strings.Contains(err.Error(), "22222222-2222-3333-4444-555555555555") || !strings.Contains(err.Error(), "nothing was imported") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a bad file created the log: %v", err)
	}
}

func TestOfflineCommandsWhileServerHoldsFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(db, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, cmd := range []string{"dump", "audit"} {
		start := time.Now()
		_, _, err := runCmd(t, cmd, "--db", db)
		if !errors.Is(err, eventlog.ErrLocked) || !strings.Contains(err.Error(), "server running") {
			t.Errorf("%s while held: %v", cmd, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v to give up", cmd, d)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"},
		{"dump", "--nope"},
		{"migrate", "--db", "x.db"},
		{"serve", "--addr", "0.0.0.0:8300"},
		{"serve", "--engine", "swarm", "--swarm-registry", "r:5000", "--swarm-advertise", "10.0.0.1:8301", "--swarm-constraints", "node.role"},
		{"serve", "--engine", "swarm", "--swarm-registry", "r:5000"},
		{"dump", "extra"},
	} {
		_, _, err := runCmd(t, args...)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if _, _, err := runCmd(t, "dump", "--db", filepath.Join(t.TempDir(), "none.db")); err == nil || errors.As(err, new(usageError)) {
		t.Errorf("dump of a missing file: %v", err)
	}
}

// TestServeConfigFromEnv: every serve flag takes its default from
// MINILAMBDA_<FLAG>, read as the flag reads the command line, which wins
// over it; a value the flag cannot parse is a usage error naming it.
func TestServeConfigFromEnv(t *testing.T) {
	t.Setenv("MINILAMBDA_ADDR", "127.0.0.1:9")
	t.Setenv("MINILAMBDA_MAX_IN_FLIGHT", "7")
	t.Setenv("MINILAMBDA_MEMORY_BUDGET", "12345")
	t.Setenv("MINILAMBDA_HOT_IDLE_TTL", "90s")
	t.Setenv("MINILAMBDA_METRICS_OPEN", "true")
	t.Setenv("MINILAMBDA_AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("MINILAMBDA_LOG_LEVEL", "debug")
	t.Setenv("MINILAMBDA_WORKERS", "0x10")
	t.Setenv("MINILAMBDA_GRACE", "45s")
	t.Setenv("MINILAMBDA_INSECURE_NO_AUTH", "1")
	t.Setenv("MINILAMBDA_POOLED_CPUS", "0.5")
	t.Setenv("MINILAMBDA_SWARM_REGISTRY", "registry:5000")
	t.Setenv("MINILAMBDA_SWARM_CONSTRAINTS", "node.role==worker")
	t.Setenv("MINILAMBDA_RUNTIME_IMAGE", "python3.12=py:1,provided.al2=base:2")
	c, err := parseServe([]string{"--max-in-flight", "9"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := serveConfig{
		addr: "127.0.0.1:9", db: c.db, grace: 45 * time.Second, maxInFlight: 9, outputLimit: c.outputLimit,
		maxImage: 2 << 30, level: "debug", workers: 16, insecure: true, maxQueue: runner.DefaultMaxQueue,
		maxAttempts: runner.DefaultMaxAttempts, maxAge: runner.DefaultMaxEventAge, retryBase: runner.DefaultRetryBase,
		hotTTL: 90 * time.Second, openMetrics: true, region: "us-east-1", awsKey: "minilambda", memBudget: 12345,
		logLevel: slog.LevelDebug, pooledCPUs: 0.5,
		swarm: swarmConfig{engine: "docker", registry: "registry:5000", gateway: ":8301", noneNetwork: "minilambda-none", constraints: "node.role==worker"},
	}
	wantRuntimes := runtimeImages{"provided": "scratch", "provided.al2023": "scratch", "provided.al2": "base:2", "python3.12": "py:1"}
	if !maps.Equal(c.runtimes, wantRuntimes) {
		t.Errorf("runtime images %v, want %v", c.runtimes, wantRuntimes)
	}
	c.runtimes = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n%+v, want\n%+v", c, want)
	}
	for name, bad := range map[string]string{"MINILAMBDA_LOG_LEVEL": "chatty", "MINILAMBDA_RUNTIME_IMAGE": "python3.12", "MINILAMBDA_GRACE": "soon",
		"MINILAMBDA_WORKERS": "many", "MINILAMBDA_METRICS_OPEN": "yes please", "MINILAMBDA_POOLED_CPUS": "-1",
		"MINILAMBDA_ENGINE": "kubernetes"} {
		t.Setenv(name, bad)
		_, err := parseServe(nil, io.Discard)
		if !errors.As(err, new(usageError)) || name != "MINILAMBDA_LOG_LEVEL" && name != "MINILAMBDA_POOLED_CPUS" && name != "MINILAMBDA_ENGINE" && !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want a usage error naming it", name, bad, err)
		}
		os.Unsetenv(name)
	}
}

// TestOfflineCommandsTakeOnlyTheirDB: dump, audit, rebuild and migrate
// read MINILAMBDA_DB and no other variable (MINILAMBDA_FROM would be a
// seq to dump and a file to migrate).
func TestOfflineCommandsTakeOnlyTheirDB(t *testing.T) {
	db := filepath.Join(t.TempDir(), "events.db")
	if _, _, err := runCmd(t, "migrate", "--db", db, "--from", filepath.Join("migrate", "testdata", "functions.json")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MINILAMBDA_DB", db)
	t.Setenv("MINILAMBDA_FROM", "3")
	t.Setenv("MINILAMBDA_TYPE", "invocation.queued")
	out, _, err := runCmd(t, "dump")
	if err != nil || strings.Count(out, "\n") != 3 {
		t.Fatalf("dump with MINILAMBDA_DB: %q %v", out, err)
	}
	if _, _, err := runCmd(t, "migrate"); !errors.As(err, new(usageError)) {
		t.Errorf("migrate without --from: %v, want a usage error", err)
	}
}
