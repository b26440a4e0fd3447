package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

func openLog(t *testing.T, path string) *eventlog.Log {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "events.db")
	}
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := l.Verify(context.Background(), projections.Projector{}, nil); err != nil {
			t.Errorf("verify on cleanup: %v", err)
		}
		l.Close()
	})
	return l
}

func mustEvent(t *testing.T, typ, fn, inv string, p any) eventlog.Event {
	t.Helper()
	// Built by hand rather than with the constructors: the tests feed the
	// projector what old or tampered logs may hold, too.
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return eventlog.Event{Type: typ, FunctionID: fn, InvocationID: inv, Data: data}
}

func appendAll(t *testing.T, l *eventlog.Log, events ...eventlog.Event) {
	t.Helper()
	if _, err := l.Append(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
}

func TestFunctionLifecycle(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	spec := function.Spec{Name: "hello", Image: "hello:1", Timeout: 30}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()}))
	spec2 := spec
	spec2.Name, spec2.Image = "hello2", "hello:2"
	appendAll(t, l, mustEvent(t, projections.TypeFunctionUpdated, "F1", "", projections.FunctionUpdated{V: 1, Version: 2, Spec: spec2}))

	if _, err := v.Function("hello"); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	f, err := v.Function("hello2")
	if err != nil || f.ID != "F1" || f.Version != 2 || f.Image != "hello:2" {
		t.Fatalf("after update: %+v %v", f, err)
	}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionDeleted, "F1", "", projections.FunctionDeleted{V: 1}))
	if _, err := v.Function("F1"); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("deleted function found: %v", err)
	}
	if fns, _ := v.Functions(); len(fns) != 0 {
		t.Fatalf("deleted function listed: %+v", fns)
	}
	versions, err := v.FunctionVersions("F1")
	if err != nil || len(versions) != 3 || !versions[2].Deleted || versions[0].Image != "hello:1" {
		t.Fatalf("versions %+v %v", versions, err)
	}
	// The name is free again.
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F2", "", projections.FunctionRegistered{V: 1, Spec: spec2, CreatedAt: time.Now()}))
	if f, err := v.Function("hello2"); err != nil || f.ID != "F2" {
		t.Fatalf("reused name: %+v %v", f, err)
	}
}

func TestInvalidSequencesAreRefused(t *testing.T) {
	l := openLog(t, "")
	spec := function.Spec{Name: "hello", Image: "hello:1"}
	reg := mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()})
	appendAll(t, l, reg)
	exit := 0
	for name, events := range map[string][]eventlog.Event{
		"name taken":        {mustEvent(t, projections.TypeFunctionRegistered, "F9", "", projections.FunctionRegistered{V: 1, Spec: spec})},
		"update unknown":    {mustEvent(t, projections.TypeFunctionUpdated, "F9", "", projections.FunctionUpdated{V: 1, Version: 2, Spec: spec})},
		"version skipped":   {mustEvent(t, projections.TypeFunctionUpdated, "F1", "", projections.FunctionUpdated{V: 1, Version: 5, Spec: spec})},
		"start unqueued":    {mustEvent(t, projections.TypeInvocationStarted, "F1", "I9", projections.InvocationStarted{V: 1, Attempt: 1})},
		"bad payload":       {{Type: projections.TypeInvocationStarted, FunctionID: "F1", InvocationID: "I9", Data: []byte(`{"attempt":"one"}`)}},
		"event after ended": {mustEvent(t, projections.TypeInvocationQueued, "F1", "I1", projections.InvocationQueued{V: 1}), mustEvent(t, projections.TypeInvocationCompleted, "F1", "I1", projections.InvocationEnded{V: 1, ExitCode: &exit}), mustEvent(t, projections.TypeInvocationStarted, "F1", "I1", projections.InvocationStarted{V: 1})},
	} {
		head, _ := l.Head()
		if _, err := l.Append(context.Background(), events...); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if h, _ := l.Head(); h != head {
			t.Errorf("%s: wrote events", name)
		}
	}
}

func queue(t *testing.T, l *eventlog.Log, fn string) string {
	id := ulid.Make().String()
	appendAll(t, l, mustEvent(t, projections.TypeInvocationQueued, fn, id, projections.InvocationQueued{V: 1, FunctionName: "hello", FunctionVersion: 1, Async: true, Event: json.RawMessage(`{"x":1}`)}))
	return id
}

func TestInvocationLifecycle(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	id := queue(t, l, "F1")
	inv, err := v.Invocation(id)
	if err != nil || inv.Status != projections.StatusPending || !inv.Async || inv.CreatedAt.IsZero() {
		t.Fatalf("queued: %+v %v", inv, err)
	}
	appendAll(t, l, mustEvent(t, projections.TypeInvocationStarted, "F1", id, projections.InvocationStarted{V: 1, Attempt: 1, ContainerID: "c1", ImageDigest: "sha256:aa"}))
	appendAll(t, l, mustEvent(t, projections.TypeInvocationTimedOut, "F1", id, projections.InvocationEnded{V: 1, Attempt: 1, Logs: "slow\n", DurationMS: 1000, Error: "timed out after 1s"}))
	inv, _ = v.Invocation(id)
	if inv.Status != projections.StatusFailed || inv.ErrorType != function.ErrorTimeout || inv.Logs != "slow\n" || inv.ContainerID != "c1" {
		t.Fatalf("timed out: %+v", inv)
	}

	// A retried invocation goes back to PENDING, then completes.
	id2 := queue(t, l, "F1")
	exit0 := 0
	appendAll(t, l,
		mustEvent(t, projections.TypeInvocationStarted, "F1", id2, projections.InvocationStarted{V: 1, Attempt: 1}),
		mustEvent(t, projections.TypeInvocationRetried, "F1", id2, projections.InvocationRetried{V: 1, Attempt: 1, Reason: "exit 1", NotBefore: time.Now().Add(time.Second)}))
	if inv, _ := v.Invocation(id2); inv.Status != projections.StatusPending || inv.NextAttemptAt == nil {
		t.Fatalf("retried: %+v", inv)
	}
	appendAll(t, l,
		mustEvent(t, projections.TypeInvocationStarted, "F1", id2, projections.InvocationStarted{V: 1, Attempt: 2}),
		mustEvent(t, projections.TypeInvocationCompleted, "F1", id2, projections.InvocationEnded{V: 1, Attempt: 2, Result: "{\"ok\":true}\n", ResultTruncated: true, ExitCode: &exit0, DurationMS: 12}))
	inv, _ = v.Invocation(id2)
	if inv.Status != projections.StatusCompleted || inv.Attempts != 2 || inv.Result != "{\"ok\":true}\n" || !inv.Truncated ||
		inv.ExitCode == nil || *inv.ExitCode != 0 || inv.Duration != 12 || inv.Timestamp == nil || inv.Error != "" {
		t.Fatalf("completed: %+v", inv)
	}
	if _, err := v.Invocation("01ZZZZZZZZZZZZZZZZZZZZZZZZ"); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("unknown invocation: %v", err)
	}
}

func TestInvocationPaging(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	var ids []string
	exit := 0
	for i := range 25 {
		fn := fmt.Sprintf("F%d", i%2)
		id := queue(t, l, fn)
		ids = append(ids, id)
		if i%3 == 0 {
			appendAll(t, l, mustEvent(t, projections.TypeInvocationCompleted, fn, id, projections.InvocationEnded{V: 1, ExitCode: &exit}))
		}
	}
	collect := func(q projections.InvocationQuery) []string {
		var out []string
		for pages := 0; ; pages++ {
			page, next, err := v.Invocations(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > q.Limit {
				t.Fatalf("page of %d over limit %d", len(page), q.Limit)
			}
			for _, inv := range page {
				out = append(out, inv.InvocationID)
				if q.FunctionID != "" && inv.FunctionID != q.FunctionID || q.Status != "" && inv.Status != q.Status {
					t.Fatalf("filter %+v let through %+v", q, inv)
				}
			}
			if next == "" {
				return out
			}
			q.Cursor = next
			if pages > 30 {
				t.Fatal("paging does not end")
			}
		}
	}
	want := func(keep func(i int) bool) []string {
		var out []string
		for i := len(ids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	for _, tc := range []struct {
		q    projections.InvocationQuery
		keep func(int) bool
	}{
		{projections.InvocationQuery{Limit: 4}, func(int) bool { return true }},
		{projections.InvocationQuery{Limit: 3, FunctionID: "F1"}, func(i int) bool { return i%2 == 1 }},
		{projections.InvocationQuery{Limit: 2, Status: projections.StatusCompleted}, func(i int) bool { return i%3 == 0 }},
		{projections.InvocationQuery{Limit: 5, Status: projections.StatusPending, FunctionID: "F0"}, func(i int) bool { return i%2 == 0 && i%3 != 0 }},
		{projections.InvocationQuery{Limit: 100}, func(int) bool { return true }},
	} {
		got, exp := collect(tc.q), want(tc.keep)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("query %+v:\n got %v\nwant %v", tc.q, got, exp)
		}
	}
	if _, _, err := v.Invocations(projections.InvocationQuery{Cursor: "nope"}); !errors.Is(err, projections.ErrBadCursor) {
		t.Errorf("bad cursor: %v", err)
	}
}

// TestTamperedViewFailsVerify alters each stored byte of the real views
// and expects Verify to fail each time.
func TestTamperedViewFailsVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: function.Spec{Name: "a", Image: "b"}, CreatedAt: time.Now()}))
	id := queue(t, l, "F1")
	exit := 3
	appendAll(t, l, mustEvent(t, projections.TypeInvocationFailed, "F1", id, projections.InvocationEnded{V: 1, ExitCode: &exit, Error: "exit 3", ErrorType: function.ErrorFunction}))
	l.Close()

	type loc struct{ view, key string }
	var locs []loc
	sizes := map[loc]int{}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !strings.HasPrefix(string(name), "view.") {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if len(v) > 0 {
					l := loc{string(name), string(k)}
					locs = append(locs, l)
					sizes[l] = len(v)
				}
				return nil
			})
		})
	})
	db.Close()
	if len(locs) < 4 {
		t.Fatalf("only %d view values to tamper with", len(locs))
	}
	for _, lc := range locs {
		for i := 0; i < sizes[lc]; i++ {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			flip := func(i int) error {
				return db.Update(func(tx *bolt.Tx) error {
					b := tx.Bucket([]byte(lc.view))
					v := append([]byte(nil), b.Get([]byte(lc.key))...)
					v[i] ^= 0x20
					return b.Put([]byte(lc.key), v)
				})
			}
			if err := flip(i); err != nil {
				t.Fatal(err)
			}
			db.Close()
			ro, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			_, verr := ro.Verify(context.Background(), projections.Projector{}, nil)
			ro.Close()
			if !errors.Is(verr, eventlog.ErrViewsDiffer) {
				t.Errorf("flipping byte %d of %s/%q: verify said %v", i, lc.view, lc.key, verr)
			}
			db, _ = bolt.Open(path, 0o600, nil)
			if err := flip(i); err != nil { // restore
				t.Fatal(err)
			}
			db.Close()
		}
	}
}

func TestReopenServesSameViews(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: function.Spec{Name: "a", Image: "b"}, CreatedAt: time.Now()}))
	id := queue(t, l, "F1")
	l.Close()
	l = openLog(t, path)
	v := projections.NewViews(l)
	if inv, err := v.Invocation(id); err != nil || inv.FunctionName != "hello" {
		t.Fatalf("after reopen: %+v %v", inv, err)
	}
	if f, err := v.Function("a"); err != nil || f.ID != "F1" {
		t.Fatalf("after reopen: %+v %v", f, err)
	}
}

// Record must answer what the views hold once the same events commit.
func TestRecordMatchesViews(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	exit0, exit3 := 0, 3
	queued := func(id string) eventlog.Event {
		return mustEvent(t, projections.TypeInvocationQueued, "F1", id, projections.InvocationQueued{V: 1, FunctionName: "hello", FunctionVersion: 2, Event: json.RawMessage(`{"x":1}`)})
	}
	started := func(id string, n int) eventlog.Event {
		return mustEvent(t, projections.TypeInvocationStarted, "F1", id, projections.InvocationStarted{V: 1, Attempt: n, ContainerID: "c1", ImageDigest: "sha256:aa"})
	}
	for name, events := range map[string]func(id string) []eventlog.Event{
		"queued": func(id string) []eventlog.Event { return []eventlog.Event{queued(id)} },
		"completed": func(id string) []eventlog.Event {
			return []eventlog.Event{queued(id), started(id, 1), mustEvent(t, projections.TypeInvocationCompleted, "F1", id,
				projections.InvocationEnded{V: 1, Attempt: 1, Result: "{\"é\":\"\\u2028\"}\n", Logs: "log\n", ExitCode: &exit0, DurationMS: 3, LogsTruncated: true})}
		},
		"failed before start": func(id string) []eventlog.Event {
			return []eventlog.Event{queued(id), mustEvent(t, projections.TypeInvocationFailed, "F1", id,
				projections.InvocationEnded{V: 1, Attempt: 1, Error: "no engine", ErrorType: function.ErrorPlatform})}
		},
		"retried then failed": func(id string) []eventlog.Event {
			return []eventlog.Event{queued(id), started(id, 1),
				mustEvent(t, projections.TypeInvocationRetried, "F1", id, projections.InvocationRetried{V: 1, Attempt: 1, Reason: "exit 3", NotBefore: time.Now(), ExitCode: &exit3, Logs: "first\n"}),
				started(id, 2),
				mustEvent(t, projections.TypeInvocationFailed, "F1", id, projections.InvocationEnded{V: 1, Attempt: 2, Logs: "second\n", ExitCode: &exit3, Error: "exit 3", ErrorType: function.ErrorFunction})}
		},
		"retried": func(id string) []eventlog.Event {
			return []eventlog.Event{queued(id), started(id, 1),
				mustEvent(t, projections.TypeInvocationRetried, "F1", id, projections.InvocationRetried{V: 1, Attempt: 1, Reason: "exit 3", NotBefore: time.Now(), ExitCode: &exit3, Result: "partial", Logs: "first\n"})}
		},
	} {
		id := ulid.Make().String()
		var appended []eventlog.Event
		// One event per commit, as an invocation's events usually come.
		for _, e := range events(id) {
			got, err := l.Append(context.Background(), e)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			appended = append(appended, got...)
		}
		want, err := v.Invocation(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := projections.Record(appended...)
		if err != nil {
			t.Fatalf("%s: Record: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Record\n%+v\nviews\n%+v", name, got, want)
		}
	}
	// Events of another invocation or a list that does not start queued.
	a, b := ulid.Make().String(), ulid.Make().String()
	qa, _ := l.Append(context.Background(), queued(a))
	sb := started(b, 1)
	if _, err := projections.Record(qa[0], sb); !errors.Is(err, projections.ErrInconsistent) {
		t.Errorf("mixed invocations: %v", err)
	}
	if _, err := projections.Record(sb); !errors.Is(err, projections.ErrInconsistent) {
		t.Errorf("no queued event: %v", err)
	}
}

// Function decodes a function once; the cache must still follow every
// change of the view and keep callers apart.
func TestFunctionCacheFollowsTheView(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	spec := function.Spec{Name: "hello", Image: "hello:1", Env: map[string]string{"A": "1"}}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()}))
	for _, ref := range []string{"F1", "hello"} {
		f, err := v.Function(ref)
		if err != nil || f.Image != "hello:1" {
			t.Fatalf("%s: %+v %v", ref, f, err)
		}
		f.Env["A"] = "changed by a caller"
	}
	if f, _ := v.Function("F1"); f.Env["A"] != "1" {
		t.Fatalf("a caller's change reached the cache: %+v", f.Env)
	}
	spec.Image = "hello:2"
	appendAll(t, l, mustEvent(t, projections.TypeFunctionUpdated, "F1", "", projections.FunctionUpdated{V: 1, Version: 2, Spec: spec}))
	for _, ref := range []string{"F1", "hello"} {
		if f, err := v.Function(ref); err != nil || f.Image != "hello:2" || f.Version != 2 {
			t.Fatalf("%s after update: %+v %v", ref, f, err)
		}
	}
	appendAll(t, l, mustEvent(t, projections.TypeFunctionDeleted, "F1", "", projections.FunctionDeleted{V: 1}))
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F2", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()}))
	if _, err := v.Function("F1"); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("deleted function served from the cache: %v", err)
	}
	if f, err := v.Function("hello"); err != nil || f.ID != "F2" {
		t.Fatalf("name now F2's: %+v %v", f, err)
	}
}

// TestInvocationTimeBounds lists the invocations created in a time range,
// paged, alone and with a function's index.
func TestInvocationTimeBounds(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 10 {
		id := ulid.MustNew(ulid.Timestamp(base.Add(time.Duration(i)*time.Second)), ulid.DefaultEntropy()).String()
		appendAll(t, l, mustEvent(t, projections.TypeInvocationQueued, fmt.Sprintf("F%d", i%2), id, projections.InvocationQueued{V: 1, FunctionName: "hello", FunctionVersion: 1}))
		ids = append(ids, id)
	}
	list := func(q projections.InvocationQuery) []string {
		var out []string
		for {
			page, next, err := v.Invocations(q)
			if err != nil {
				t.Fatal(err)
			}
			for _, inv := range page {
				out = append(out, inv.InvocationID)
			}
			if next == "" {
				return out
			}
			q.Cursor = next
		}
	}
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		q    projections.InvocationQuery
		want []int
	}{
		{projections.InvocationQuery{After: at(3), Before: at(7), Limit: 2}, []int{6, 5, 4, 3}},
		{projections.InvocationQuery{After: at(3), Before: at(7), Limit: 1, FunctionID: "F0"}, []int{6, 4}},
		{projections.InvocationQuery{Before: at(2)}, []int{1, 0}},
		{projections.InvocationQuery{Before: at(2), Cursor: ids[8]}, []int{1, 0}},
		{projections.InvocationQuery{Before: at(8), Cursor: ids[3]}, []int{2, 1, 0}},
		{projections.InvocationQuery{After: at(8).Add(-time.Millisecond)}, []int{9, 8}},
		{projections.InvocationQuery{Before: time.Unix(-5, 0)}, nil},
		{projections.InvocationQuery{After: at(3600)}, nil},
		{projections.InvocationQuery{Before: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 3}, []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
	} {
		var want []string
		for _, i := range tc.want {
			want = append(want, ids[i])
		}
		if got := list(tc.q); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%+v:\n got %v\nwant %v", tc.q, got, want)
		}
	}
}
