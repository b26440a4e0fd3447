package eventlog_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	bolt "go.etcd.io/bbolt"
)

// counter is a small projector: it counts events per type in view
// "counts", enough to exercise the views machinery without the real one.
type counter struct{}

func (counter) Version() string                         { return "counter-v1" }
func (counter) Begin(tx eventlog.ViewTx) eventlog.Batch { return &counterBatch{tx: tx} }

type counterBatch struct{ tx eventlog.ViewTx }

func (b *counterBatch) Apply(e *eventlog.Event) error {
	if e.Type == "bad" {
		return errors.New("refused")
	}
	var n uint64
	if v := b.tx.Get("counts", []byte(e.Type)); v != nil {
		n = binary.BigEndian.Uint64(v)
	}
	return b.tx.Put("counts", []byte(e.Type), binary.BigEndian.AppendUint64(nil, n+1))
}
func (b *counterBatch) Flush() error { return nil }

// open opens a log in a temp dir and, on cleanup, closes it and checks
// that it verifies.
func open(t testing.TB, path string) *eventlog.Log {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "events.db")
	}
	l, err := eventlog.Open(path, eventlog.Options{Projector: counter{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		ro, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("reopen read-only: %v", err)
		}
		defer ro.Close()
		if _, err := ro.Verify(context.Background(), counter{}, nil); err != nil {
			t.Errorf("verify on cleanup: %v", err)
		}
	})
	return l
}

func ev(typ, fn string, data any) eventlog.Event {
	b, _ := json.Marshal(data)
	return eventlog.Event{Type: typ, FunctionID: fn, Data: b}
}

func readAll(t testing.TB, l *eventlog.Log, from uint64, f eventlog.Filter) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
	if err := l.Read(context.Background(), from, f, func(e eventlog.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendAndRead(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	got, err := l.Append(ctx, ev("a", "f1", map[string]int{"n": 1}), ev("b", "f2", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Seq != 1 || got[1].Seq != 2 || got[1].Prev != got[0].Hash || got[0].Prev != (eventlog.Hash{}) {
		t.Fatalf("seqs and chain not assigned: %+v", got)
	}
	if got[0].ID == got[1].ID || got[0].Time.IsZero() {
		t.Fatalf("ids or time not assigned: %+v", got)
	}
	if _, err := l.Append(ctx, ev("a", "f2", "x")); err != nil {
		t.Fatal(err)
	}
	all := readAll(t, l, 0, eventlog.Filter{})
	if len(all) != 3 || string(all[0].Data) != `{"n":1}` || all[2].Prev != all[1].Hash {
		t.Fatalf("read back %+v", all)
	}
	if head, h := l.Head(); head != 3 || h != all[2].Hash {
		t.Fatalf("head %d %s", head, h)
	}
	for _, tc := range []struct {
		f    eventlog.Filter
		from uint64
		want []uint64
	}{
		{eventlog.Filter{Type: "a"}, 0, []uint64{1, 3}},
		{eventlog.Filter{FunctionID: "f2"}, 0, []uint64{2, 3}},
		{eventlog.Filter{}, 2, []uint64{2, 3}},
		{eventlog.Filter{Type: "none"}, 0, nil},
		{eventlog.Filter{}, 4, nil},
	} {
		var seqs []uint64
		for _, e := range readAll(t, l, tc.from, tc.f) {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(tc.want) {
			t.Errorf("filter %+v from %d: got %v want %v", tc.f, tc.from, seqs, tc.want)
		}
	}
	if all[1].Prev != all[0].Hash {
		t.Errorf("read from 2 lost prev")
	}
}

func TestAppendRejectsInvalid(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	for _, e := range []eventlog.Event{
		{Type: ""},
		{Type: "x", Data: []byte("{not json")},
	} {
		if _, err := l.Append(ctx, e); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("append %+v: %v, want ErrInvalid", e, err)
		}
	}
	if _, err := l.Append(ctx); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("empty append: %v", err)
	}
	if head, _ := l.Head(); head != 0 {
		t.Fatalf("invalid appends wrote: head %d", head)
	}
}

func TestProjectorErrorFailsOnlyItsGroup(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			typ := "good"
			if i%4 == 0 {
				typ = "bad"
			}
			_, errs[i] = l.Append(ctx, ev("good", "", i), ev(typ, "", i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%4 == 0) != (err != nil) {
			t.Errorf("append %d: %v", i, err)
		}
	}
	if head, _ := l.Head(); head != 60 {
		t.Fatalf("head %d, want 60 (30 good groups of 2)", head)
	}
}

func TestAppendIf(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	taken := errors.New("taken")
	onlyOnce := func(r eventlog.ViewReader) error {
		if r.Get("counts", []byte("claim")) != nil {
			return taken
		}
		return nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.AppendIf(ctx, onlyOnce, ev("claim", "", nil))
			if err != nil && !errors.Is(err, taken) {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			}
		}()
	}
	wg.Wait()
	if head, _ := l.Head(); wins != 1 || head != 1 {
		t.Fatalf("%d appends won, head %d; want exactly 1", wins, head)
	}
}

func TestConcurrentAppenders(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	const writers, each = 64, 40
	var wg sync.WaitGroup
	seen := make(chan uint64, writers*each*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				got, err := l.Append(ctx, ev("w", strconv.Itoa(w), i), ev("w2", strconv.Itoa(w), i))
				if err != nil {
					t.Error(err)
					return
				}
				if got[1].Seq != got[0].Seq+1 {
					t.Errorf("group split: %d then %d", got[0].Seq, got[1].Seq)
				}
				seen <- got[0].Seq
				seen <- got[1].Seq
			}
		}()
	}
	wg.Wait()
	close(seen)
	set := map[uint64]bool{}
	for s := range seen {
		if set[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		set[s] = true
	}
	for s := uint64(1); s <= writers*each*2; s++ {
		if !set[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: counter{}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := l.Append(context.Background(), ev("a", "", 1), ev("a", "", 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), ev("a", "", 3)); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l = open(t, path)
	if head, h := l.Head(); head != 2 || h != first[1].Hash {
		t.Fatalf("head after reopen %d %s", head, h)
	}
	got, err := l.Append(context.Background(), ev("a", "", 3))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Seq != 3 || got[0].Prev != first[1].Hash {
		t.Fatalf("append after reopen: %+v", got[0])
	}
}

func TestFollow(t *testing.T) {
	l := open(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := l.Append(ctx, ev("a", "", 0)); err != nil {
		t.Fatal(err)
	}
	got := make(chan eventlog.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, 1, eventlog.Filter{Type: "a"}, func(e eventlog.Event) error {
			got <- e
			return nil
		})
	}()
	for i := 1; i <= 3; i++ {
		if _, err := l.Append(ctx, ev("a", "", i), ev("skip", "", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []uint64{1, 2, 4, 6} {
		select {
		case e := <-got:
			if e.Seq != want {
				t.Fatalf("followed seq %d, want %d", e.Seq, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("follow did not deliver seq %d", want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow returned %v", err)
	}
}

func TestReadOnlyWhileHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l := open(t, path)
	if _, err := l.Append(context.Background(), ev("a", "", 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := eventlog.Open(path, eventlog.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	if !errors.Is(err, eventlog.ErrLocked) {
		t.Fatalf("read-only open of a held file: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

func TestReadOnlyRefusesAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l := open(t, path)
	if _, err := l.Append(context.Background(), ev("a", "", 1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ro, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Append(context.Background(), ev("a", "", 2)); !errors.Is(err, eventlog.ErrReadOnly) {
		t.Fatalf("append read-only: %v", err)
	}
	if n := len(readAll(t, ro, 0, eventlog.Filter{})); n != 1 {
		t.Fatalf("read %d events read-only", n)
	}
}

func TestViewsCatchUpAndRebuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	// Events appended without a projector leave the views behind; opening
	// with one must bring them up to date.
	l, err := eventlog.Open(path, eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := l.Append(context.Background(), ev("a", "", i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l = open(t, path)
	var n uint64
	l.View(func(r eventlog.ViewReader) error {
		n = binary.BigEndian.Uint64(r.Get("counts", []byte("a")))
		return nil
	})
	if n != 5 {
		t.Fatalf("count after catch-up %d, want 5", n)
	}
	if err := l.Rebuild(context.Background(), counter{}); err != nil {
		t.Fatal(err)
	}
}

// TestTamperedBytesFailVerify flips every byte of every stored event and
// view value in turn and expects Verify to notice each.
func TestTamperedBytesFailVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: counter{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, eventlog.Event{Type: "a", FunctionID: "f", InvocationID: "i", Data: []byte(`{"k":"v"}`)}, ev("b", "", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, ev("a", "", 3)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	type target struct {
		bucket []string
		key    []byte
		size   int
	}
	var targets []target
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		tx.Bucket([]byte("events")).ForEach(func(k, v []byte) error {
			targets = append(targets, target{[]string{"events"}, append([]byte(nil), k...), len(v)})
			return nil
		})
		tx.Bucket([]byte("view.counts")).ForEach(func(k, v []byte) error {
			targets = append(targets, target{[]string{"view.counts"}, append([]byte(nil), k...), len(v)})
			return nil
		})
		return nil
	})
	db.Close()
	if len(targets) != 5 {
		t.Fatalf("found %d stored values, want 3 events and 2 counts", len(targets))
	}
	for _, tg := range targets {
		for i := 0; i < tg.size; i++ {
			if err := os.WriteFile(path, pristine, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(tg.bucket[0]))
				for _, n := range tg.bucket[1:] {
					b = b.Bucket([]byte(n))
				}
				v := append([]byte(nil), b.Get(tg.key)...)
				v[i] ^= 0x01
				return b.Put(tg.key, v)
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			ro, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
			if err != nil {
				continue // a tampered head that no longer decodes: refused at open, also a failure
			}
			_, err = ro.Verify(ctx, counter{}, nil)
			ro.Close()
			if err == nil {
				t.Errorf("flipping byte %d of %v/%x went unnoticed", i, tg.bucket, tg.key)
			}
		}
	}
}

// TestCrashSafety appends from a child process, kills it with SIGKILL in
// the middle and checks that every append it saw return is in the file,
// which opens and verifies.
func TestCrashSafety(t *testing.T) {
	if os.Getenv("EVENTLOG_CRASH_CHILD") != "" {
		crashChild(os.Getenv("EVENTLOG_CRASH_CHILD"))
		return
	}
	path := filepath.Join(t.TempDir(), "events.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
		cmd.Env = append(os.Environ(), "EVENTLOG_CRASH_CHILD="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[uint64]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var seq uint64
			var payload string
			if _, err := fmt.Sscanf(sc.Text(), "%d %s", &seq, &payload); err != nil {
				continue
			}
			acked[seq] = payload
			if len(acked) == 300+round*100 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if len(acked) < 300 {
			t.Fatalf("child acknowledged only %d appends", len(acked))
		}
		ro, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("open after SIGKILL: %v", err)
		}
		sum, err := ro.Verify(context.Background(), counter{}, nil)
		if err != nil {
			t.Fatalf("verify after SIGKILL: %v", err)
		}
		got := map[uint64]string{}
		ro.Read(context.Background(), 0, eventlog.Filter{}, func(e eventlog.Event) error {
			got[e.Seq] = string(e.Data)
			return nil
		})
		ro.Close()
		for seq, p := range acked {
			if got[seq] != p {
				t.Fatalf("round %d: acknowledged seq %d with %s, file has %q", round, seq, p, got[seq])
			}
		}
		t.Logf("round %d: %d acknowledged, %d in the file", round, len(acked), sum.Events)
	}
}

// crashChild appends from 8 goroutines until killed, printing each
// acknowledged event.
func crashChild(path string) {
	l, err := eventlog.Open(path, eventlog.Options{Projector: counter{}, LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				data := fmt.Sprintf(`"g%d-%d"`, g, i)
				got, err := l.Append(context.Background(), eventlog.Event{Type: "crash", Data: []byte(data)})
				if err != nil {
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "%d %s\n", got[0].Seq, data)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestRefusedGroupsAmongOthers: events are encoded for their seqs before
// the transaction, so a group refused in the middle of a commit moves the
// seqs of every group after it; those must land stamped for where they
// really are, with the chain intact (open's cleanup verifies it).
func TestRefusedGroupsAmongOthers(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	no := errors.New("no")
	refuse := func(eventlog.ViewReader) error { return no }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []eventlog.Event
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				var cond func(eventlog.ViewReader) error
				if (w+i)%3 == 0 {
					cond = refuse
				}
				evs, err := l.AppendIf(ctx, cond, ev("a", strconv.Itoa(w), i), ev("b", strconv.Itoa(w), i))
				if cond != nil {
					if !errors.Is(err, no) {
						t.Errorf("a refused group: %v", err)
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, evs...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	head, _ := l.Head()
	if int(head) != len(got) {
		t.Fatalf("head %d after %d events appended", head, len(got))
	}
	for _, e := range got {
		var stored eventlog.Event
		err := l.ReadRange(ctx, e.Seq, e.Seq, eventlog.Filter{}, func(x eventlog.Event) error { stored = x; return nil })
		if err != nil || stored.Hash != e.Hash || stored.ID != e.ID {
			t.Fatalf("seq %d: returned %s %s, stored %s %s (%v)", e.Seq, e.ID, e.Hash, stored.ID, stored.Hash, err)
		}
	}
}

// TestCommitStats: each commit tells how many events it appended, the pages
// it wrote and, on Linux, the writer's CPU.
func TestCommitStats(t *testing.T) {
	var mu sync.Mutex
	var stats []eventlog.CommitStats
	l, err := eventlog.Open(filepath.Join(t.TempDir(), "events.db"), eventlog.Options{Projector: counter{}, OnCommit: func(c eventlog.CommitStats) {
		mu.Lock()
		stats = append(stats, c)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		if _, err := l.Append(context.Background(), ev("a", "", i), ev("b", "", i), ev("c", "", i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var events int
	var cpu time.Duration
	for _, c := range stats {
		events += c.Events
		cpu += c.CPU
		// The events bucket's leaf and the buckets' root at least (a small
		// view sits inline in the root).
		if c.Pages < 2 || c.Duration <= 0 || c.CPU > c.Duration+time.Millisecond {
			t.Errorf("commit %+v", c)
		}
	}
	if events != 60 {
		t.Errorf("commits told of %d events, want 60", events)
	}
	if runtime.GOOS == "linux" && cpu <= 0 {
		t.Errorf("no CPU time told over %d commits", len(stats))
	}
}
