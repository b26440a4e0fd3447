package main

import (
	"bytes"
	"context"
	byteorder "encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// sample is a real log: one function and 100 completed invocations, 301
// events, big enough that the events bucket and the invocations view span
// several pages under a branch page.
type sample struct {
	path string
	invs []string // invocation ids, oldest first; invocation i's events are seqs 2+3i, 3+3i, 4+3i
}

func buildSample(t testing.TB) sample {
	t.Helper()
	s := sample{path: filepath.Join(t.TempDir(), "pristine.db")}
	l, err := eventlog.Open(s.path, eventlog.Options{Projector: projections.Projector{}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, err := projections.NewFunctionRegistered("fn1", projections.FunctionRegistered{
		Spec:      function.Spec{Name: "hello", Image: "hello:latest", Timeout: 30, MemoryMB: 256},
		CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, reg); err != nil {
		t.Fatal(err)
	}
	exit := 0
	for i := range 100 {
		inv := ulid.Make().String()
		q, err1 := projections.NewInvocationQueued("fn1", inv, projections.InvocationQueued{
			FunctionName: "hello", FunctionVersion: 1, Event: []byte(`{"order":12345,"items":[1,2,3]}`),
		})
		st, err2 := projections.NewInvocationStarted("fn1", inv, projections.InvocationStarted{Attempt: 1, ContainerID: "c0ffee", ImageDigest: "sha256:abc"})
		end, err3 := projections.NewInvocationEnded("fn1", inv, projections.InvocationEnded{
			Attempt: 1, Result: fmt.Sprintf(`{"answer":%d}`, i), Logs: "handled\n", ExitCode: &exit, DurationMS: 12,
		})
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, q, st, end); err != nil {
			t.Fatal(err)
		}
		s.invs = append(s.invs, inv)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// raw is a log file's bytes, to damage as a disk or a careless hand would.
type raw struct {
	t        testing.TB
	src      string // the undamaged file the bytes came from
	path     string
	b        []byte
	pageSize int
}

func readRaw(t testing.TB, path string) *raw {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return &raw{t: t, src: path, path: path, b: b, pageSize: int(byteorder.NativeEndian.Uint32(b[24:]))}
}

func (r *raw) save() {
	r.t.Helper()
	if err := os.WriteFile(r.path, r.b, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// page returns page id's header and elements; flags at 8, count at 10.
func (r *raw) page(id uint64) []byte { return r.b[int(id)*r.pageSize : int(id+1)*r.pageSize] }

// root returns the root page of a top-level bucket, which must not be
// inline.
func (r *raw) root(bucket string) uint64 {
	r.t.Helper()
	db, err := bolt.Open(r.src, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	var root uint64
	db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte(bucket)).RootPage())
		return nil
	})
	if root == 0 {
		r.t.Fatalf("bucket %s is inline", bucket)
	}
	return root
}

// firstLeaf returns the leftmost leaf page under page id.
func (r *raw) firstLeaf(id uint64) uint64 {
	for byteorder.NativeEndian.Uint16(r.page(id)[8:]) == 0x01 {
		id = byteorder.NativeEndian.Uint64(r.page(id)[16+8:])
	}
	return id
}

// event returns the offset of the stored value of event seq: its key, the
// format byte and the seq again are a pattern found nowhere else.
func (r *raw) event(seq uint64) int {
	r.t.Helper()
	k := byteorder.BigEndian.AppendUint64(nil, seq)
	pat := append(append(append([]byte(nil), k...), 1), k...)
	i := bytes.Index(r.b, pat)
	if i < 0 || bytes.Index(r.b[i+1:], pat) >= 0 {
		r.t.Fatalf("event %d not found once", seq)
	}
	return i + len(k)
}

func (r *raw) index(pat string) int {
	r.t.Helper()
	i := bytes.Index(r.b, []byte(pat))
	if i < 0 {
		r.t.Fatalf("%q not in the file", pat)
	}
	return i
}

// damage is one way a file goes wrong. dump, audit and serve must each
// exit 3 with an error naming the file, and mention.
type damage struct {
	name    string
	apply   func(s sample, r *raw)
	mention string // what the errors must say besides the file's name
	// serveMention, when set, is what serve's error says instead.
	serveMention string
	// dumpOK: dump does not read what is damaged, and succeeds.
	dumpOK bool
}

// codes returns the exit status dump, audit and serve must end with.
func (d damage) codes() [3]int {
	if d.dumpOK {
		return [3]int{0, 3, 3}
	}
	return [3]int{3, 3, 3}
}

var damages = []damage{
	{name: "empty", apply: func(s sample, r *raw) { r.b = nil }, mention: "empty"},
	{name: "random-bytes", apply: func(s sample, r *raw) {
		rng := rand.NewChaCha8([32]byte{7})
		r.b = make([]byte, 64<<10)
		rng.Read(r.b)
	}, mention: "not an event log"},
	{name: "foreign-bbolt", apply: func(s sample, r *raw) {
		db, err := bolt.Open(r.path+".other", 0o600, nil)
		if err != nil {
			r.t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("sessions"))
			return b.Put([]byte("k"), []byte("v"))
		})
		db.Close()
		r.b, _ = os.ReadFile(r.path + ".other")
	}, mention: `not an event log: it has no "events" bucket but holds "sessions"`},
	{name: "truncated-half", apply: func(s sample, r *raw) { r.b = r.b[:len(r.b)/2] }, mention: "truncated"},
	{name: "truncated-to-one-page", apply: func(s sample, r *raw) { r.b = r.b[:r.pageSize] }, mention: "truncated"},
	{name: "both-meta-pages-zeroed", apply: func(s sample, r *raw) {
		clear(r.b[:2*r.pageSize])
	}, mention: "no valid bbolt meta page"},
	{name: "leaf-flags-zero", apply: func(s sample, r *raw) {
		leaf := r.firstLeaf(r.root("events"))
		byteorder.NativeEndian.PutUint16(r.page(leaf)[8:], 0)
	}, mention: "neither a branch nor a leaf"},
	{name: "branch-flags-meta", apply: func(s sample, r *raw) {
		byteorder.NativeEndian.PutUint16(r.page(r.root("events"))[8:], 0x04)
	}, mention: "neither a branch nor a leaf"},
	{name: "leaf-count-huge", apply: func(s sample, r *raw) {
		leaf := r.firstLeaf(r.root("view.invocations"))
		byteorder.NativeEndian.PutUint16(r.page(leaf)[10:], 0xFFFF)
	}, mention: "65535 elements do not fit"},
	{name: "leaf-count-one-more", apply: func(s sample, r *raw) {
		p := r.page(r.firstLeaf(r.root("events")))
		byteorder.NativeEndian.PutUint16(p[10:], byteorder.NativeEndian.Uint16(p[10:])+1)
	}, mention: "outside its page"},
	{name: "leaf-count-two-fewer", apply: func(s sample, r *raw) {
		// The page still holds together; two events drop out of the log.
		p := r.page(r.firstLeaf(r.root("events")))
		byteorder.NativeEndian.PutUint16(p[10:], byteorder.NativeEndian.Uint16(p[10:])-2)
	}, mention: "missing"},
	{name: "branch-count-huge", apply: func(s sample, r *raw) {
		byteorder.NativeEndian.PutUint16(r.page(r.root("events"))[10:], 0xFFFF)
	}, mention: "do not fit"},
	{name: "child-beyond-file", apply: func(s sample, r *raw) {
		byteorder.NativeEndian.PutUint64(r.page(r.root("events"))[16+8:], 1<<40)
	}, mention: "outside the file"},
	{name: "page-id-mismatch", apply: func(s sample, r *raw) {
		leaf := r.firstLeaf(r.root("events"))
		byteorder.NativeEndian.PutUint64(r.page(leaf), leaf+1)
	}, mention: "its header says page"},
	{name: "keys-out-of-order", apply: func(s sample, r *raw) {
		// The second key of the invocations view's first leaf sorts last:
		// bbolt opening the file for writing panics at this in a goroutine
		// of its own, where no recover reaches.
		p := r.page(r.firstLeaf(r.root("view.invocations")))
		off := 16 + 16
		pos := int(byteorder.NativeEndian.Uint32(p[off+4:]))
		p[off+pos] = 0xff
	}, mention: "key 2 does not sort after key 1"},
	{name: "event-envelope-garbage", apply: func(s sample, r *raw) {
		i := r.event(150) // a middle event: the format byte, then 16 bytes of garbage
		copy(r.b[i:], bytes.Repeat([]byte{0xEE}, 17))
	}, mention: "seq 150"},
	{name: "event-data-garbage", apply: func(s sample, r *raw) {
		// The newest invocation's result, its JSON broken: every length
		// stays right, only the hash chain and a decoder can tell.
		i := r.event(301)
		j := i + bytes.Index(r.b[i:], []byte(`"result":`)) + len(`"result"`)
		r.b[j] = '!'
	}, mention: "seq 301", serveMention: "run `minilambda rebuild"},
	{name: "view-record-garbage", apply: func(s sample, r *raw) {
		// The newest invocation's record: key "r"+id, then its value,
		// whose first byte is the record's format.
		i := r.index("r" + s.invs[len(s.invs)-1])
		r.b[i+1+26] = 0xEE
	}, dumpOK: true, mention: "rebuild"},
}

// copyOf returns a damaged copy of s.
func (d damage) copyOf(t *testing.T, s sample) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), d.name+".db")
	r := readRaw(t, s.path)
	r.path = path
	d.apply(s, r)
	r.save()
	return path
}

// TestDamagedFiles runs dump, audit and serve on each kind of damage, in
// process: each must fail with exit status 3 and an error naming the file,
// never panic, and serve must fail before it listens.
func TestDamagedFiles(t *testing.T) {
	s := buildSample(t)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			path := d.copyOf(t, s)
			for _, c := range commands(d, path, freeAddr(t)) {
				start := time.Now()
				err := runNoPanic(t, c.args...)
				if got := exitCode(err); got != c.want {
					t.Errorf("%s: exit status %d, want %d: %v", c.args[0], got, c.want, err)
					continue
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("%s took %v", c.args[0], d)
				}
				if c.want == 0 {
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, c.mention) {
					t.Errorf("%s: %q should name %s and say %q", c.args[0], msg, path, c.mention)
				}
			}
		})
	}
	// Nothing above touched the original: it still audits clean.
	if out, _, err := runCmd(t, "audit", "--db", s.path); err != nil || !strings.HasPrefix(out, "audit ok: 301 events") {
		t.Fatalf("audit of the undamaged log: %q %v", out, err)
	}
}

type command struct {
	args    []string
	want    int    // exit status
	mention string // what the error says besides the file's name
}

func commands(d damage, path, addr string) []command {
	codes := d.codes()
	serveMention := d.mention
	if d.serveMention != "" {
		serveMention = d.serveMention
	}
	return []command{
		{[]string{"dump", "--db", path}, codes[0], d.mention},
		{[]string{"audit", "--db", path}, codes[1], d.mention},
		{[]string{"serve", "--db", path, "--addr", addr}, codes[2], serveMention},
	}
}

// runNoPanic runs a command in process and fails the test, instead of
// crashing it, if the command panics.
func runNoPanic(t *testing.T, args ...string) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%v panicked: %v", args, r)
		}
	}()
	_, _, err = runCmd(t, args...)
	return err
}

// TestUndamagedCopy runs what the damaged files went through on a sound
// copy: the commands succeed, serve's opening check passes, and the log
// still audits clean afterwards.
func TestUndamagedCopy(t *testing.T) {
	s := buildSample(t)
	out, _, err := runCmd(t, "dump", "--db", s.path)
	if err != nil || strings.Count(out, "\n") != 301 {
		t.Fatalf("dump: %d lines, %v", strings.Count(out, "\n"), err)
	}
	l, err := openLog(s.path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatalf("serve's open: %v", err)
	}
	l.Close()
	if out, _, err := runCmd(t, "rebuild", "--db", s.path); err != nil || !strings.HasPrefix(out, "rebuild ok: 301 events") {
		t.Fatalf("rebuild: %q %v", out, err)
	}
	if out, _, err := runCmd(t, "audit", "--db", s.path); err != nil || !strings.HasPrefix(out, "audit ok: 301 events") {
		t.Fatalf("audit: %q %v", out, err)
	}
}

// TestRebuildRepairsViews damages a view record: serve refuses, naming
// the rebuild command; rebuild repairs it; then audit passes and serve's
// check lets the log open.
func TestRebuildRepairsViews(t *testing.T) {
	path := damageNamed(t, "view-record-garbage").copyOf(t, buildSample(t))
	_, err := openLog(path, eventlog.Options{Projector: projections.Projector{}})
	if want := "run `minilambda rebuild --db " + path + "`"; err == nil || !strings.Contains(err.Error(), want) || exitCode(err) != 3 {
		t.Fatalf("serve's open of damaged views: %v, want exit status 3 and %q", err, want)
	}
	if _, _, err := runCmd(t, "audit", "--db", path); !errors.Is(err, eventlog.ErrViewsDiffer) {
		t.Fatalf("audit: %v", err)
	}
	out, _, err := runCmd(t, "rebuild", "--db", path)
	if err != nil || !strings.HasPrefix(out, "rebuild ok: 301 events, hash chain intact") {
		t.Fatalf("rebuild: %q %v", out, err)
	}
	if out, _, err := runCmd(t, "audit", "--db", path); err != nil || !strings.HasPrefix(out, "audit ok: 301 events") {
		t.Fatalf("audit after rebuild: %q %v", out, err)
	}
	l, err := openLog(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatalf("serve's open after rebuild: %v", err)
	}
	l.Close()
}

// TestRebuildRefusesDamagedEvents: views cannot be made from events that
// do not chain; rebuild says so, names the seq, and changes nothing.
func TestRebuildRefusesDamagedEvents(t *testing.T) {
	path := damageNamed(t, "event-data-garbage").copyOf(t, buildSample(t))
	before, _ := os.ReadFile(path)
	_, _, err := runCmd(t, "rebuild", "--db", path)
	if exitCode(err) != 3 || !strings.Contains(err.Error(), "seq 301: hash chain broken") || !strings.Contains(err.Error(), path) {
		t.Fatalf("rebuild of damaged events: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("a refused rebuild changed the file")
	}
}

// TestDamagedFilesBinary runs the built binary on every kind of damage:
// a fault inside bbolt's memory map would kill the process with SIGSEGV,
// which no in-process test survives. Each command must exit 3 with stderr
// naming the file, and no panic or signal.
func TestDamagedFilesBinary(t *testing.T) {
	bin := binary(t)
	s := buildSample(t)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			path := d.copyOf(t, s)
			for _, c := range commands(d, path, "127.0.0.1:0") {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				cmd := exec.CommandContext(ctx, bin, c.args...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				err := cmd.Run()
				cancel()
				code := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					code = exit.ExitCode()
					if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						t.Errorf("%s: killed by %v\n%s", c.args[0], ws.Signal(), stderr.String())
						continue
					}
				} else if err != nil {
					t.Fatal(err)
				}
				msg := stderr.String()
				switch {
				case code != c.want:
					t.Errorf("%s: exit status %d, want %d\n%s", c.args[0], code, c.want, msg)
				case strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") || strings.Contains(msg, "SIGSEGV"):
					t.Errorf("%s: crashed:\n%s", c.args[0], msg)
				case c.want != 0 && (!strings.Contains(msg, path) || !strings.HasPrefix(msg, "minilambda: ") || !strings.Contains(msg, c.mention)):
					t.Errorf("%s: stderr does not name %s and say %q:\n%s", c.args[0], path, c.mention, msg)
				}
			}
		})
	}
}

// TestServeUndamagedBinary serves a sound copy with the real binary after
// it has been checked, reads the invocations through the API, stops it,
// and audits: opening checks change nothing. It needs Docker, as serve
// does.
func TestServeUndamagedBinary(t *testing.T) {
	dockertest.Client(t)
	s := buildSample(t)
	srv := startServer(t, s.path)
	var p page
	if code := srv.call("GET", "/invocations?limit=1000", nil, &p); code != 200 || len(p.Invocations) != 100 {
		t.Fatalf("GET /invocations: %d, %d invocations", code, len(p.Invocations))
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("serve: %v", err)
	}
	out, _, err := runCmd(t, "audit", "--db", s.path)
	if err != nil || !strings.HasPrefix(out, "audit ok: ") {
		t.Fatalf("audit after serve: %q %v", out, err)
	}
}

// BenchmarkOpenLog1M measures serve's opening of a log of a million events
// (eventlog.Open with its check of the file, then the sample of the views)
// against eventlog.Open alone. MINILAMBDA_BENCH_1M names the fixture that
// eventlog's BenchmarkOpen1M builds.
func BenchmarkOpenLog1M(b *testing.B) {
	path := os.Getenv("MINILAMBDA_BENCH_1M")
	if path == "" {
		b.Skip("MINILAMBDA_BENCH_1M names no fixture; go test -bench Open1M ./eventlog builds one")
	}
	opts := eventlog.Options{Projector: projections.Projector{}}
	for range b.N {
		l, err := openLog(path, opts)
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

// damageNamed is the damage of that name.
func damageNamed(t *testing.T, name string) damage {
	t.Helper()
	for _, d := range damages {
		if d.name == name {
			return d
		}
	}
	t.Fatalf("no damage named %q", name)
	return damage{}
}
