package http

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// streamServer serves /events of the log at path, with a token.
func streamServer(t *testing.T, path string) (*eventlog.Log, *httptest.Server, *Server) {
	t.Helper()
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	api := New(Options{Events: l, Views: projections.NewViews(l), Token: "tok"})
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.EndStreams()
		srv.Close()
		l.Close()
	})
	return l, srv, api
}

func register(t *testing.T, l *eventlog.Log, id, name string) {
	t.Helper()
	e, err := projections.NewFunctionRegistered(id, projections.FunctionRegistered{Spec: function.Spec{Name: name, Image: "img"}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// sse reads a stream: each event's id and decoded data, until n events or
// the stream's end.
type sseEvent struct {
	id uint64
	e  eventlog.Event
}

func readSSE(t *testing.T, r *bufio.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	hasData := false
	for len(out) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			return out
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &cur.e); err != nil {
				t.Fatalf("data %q: %v", line, err)
			}
			hasData = true
		case line == "" && hasData:
			out = append(out, cur)
			cur, hasData = sseEvent{}, false
		case line == "":
			// An id without data moves the client's last id and is no
			// event.
			cur = sseEvent{}
		}
	}
	return out
}

func subscribe(t *testing.T, url, lastID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

// TestEventStreamResumes reads the stream, stops the server and its log,
// appends more on the reopened log, and reconnects with Last-Event-ID: the
// events continue from the next seq, none missing and none twice. Filters
// and the token apply.
func TestEventStreamResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	l, srv, api := streamServer(t, path)
	for i := range 3 {
		register(t, l, fmt.Sprintf("F%d", i), fmt.Sprintf("fn%d", i))
	}
	if resp, err := http.Get(srv.URL + "/events"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("without the token: %v %v", resp, err)
	}
	resp, r := subscribe(t, srv.URL+"/events?from=1", "")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	got := readSSE(t, r, 2)
	if len(got) != 2 || got[0].id != 1 || got[1].id != 2 || got[1].e.Seq != 2 || got[1].e.Type != projections.TypeFunctionRegistered || got[1].e.Hash.String() == "" {
		t.Fatalf("first events: %+v", got)
	}
	// The server goes away with the client mid-stream.
	api.EndStreams()
	srv.Close()
	l.Close()

	l, srv, _ = streamServer(t, path)
	register(t, l, "F3", "fn3")
	_, r = subscribe(t, srv.URL+"/events", strconv.FormatUint(got[1].id, 10))
	rest := readSSE(t, r, 2)
	if len(rest) != 2 || rest[0].id != 3 || rest[1].id != 4 || rest[1].e.FunctionID != "F3" {
		t.Fatalf("after the reconnect: %+v", rest)
	}
	// Live: appended after the subscription, new events only by default.
	_, live := subscribe(t, srv.URL+"/events?type="+projections.TypeFunctionDeleted+"&function=fn3", "")
	del, _ := projections.NewFunctionDeleted("F3")
	register(t, l, "F4", "fn4")
	if _, err := l.Append(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	if ev := readSSE(t, live, 1); len(ev) != 1 || ev[0].e.Type != projections.TypeFunctionDeleted || ev[0].e.FunctionID != "F3" {
		t.Fatalf("live, filtered: %+v", ev)
	}
	for _, bad := range []string{"?from=x", "?from=0", "?function=a%20b"} {
		req, _ := http.NewRequest("GET", srv.URL+"/events"+bad, nil)
		req.Header.Set("Authorization", "Bearer tok")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
			t.Errorf("%s: %v %v", bad, resp, err)
		}
	}
}

// TestSlowSubscriberIsCutOff subscribes and never reads while large
// events are appended: every append completes at full speed, the server
// holds a bounded part of the events for it and cuts it off once its
// connection stalls past the write deadline, and the subscriber resumes
// from the last id it got.
func TestSlowSubscriberIsCutOff(t *testing.T) {
	l, srv, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	register(t, l, "F1", "fn")
	// A raw connection, which reads nothing until the appends are done.
	addr := strings.TrimPrefix(srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events?from=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n")
	time.Sleep(200 * time.Millisecond)

	big := strings.Repeat("x", 256<<10)
	begin := time.Now()
	const n = 200 // 50 MiB of events, far past what a subscriber may hold
	for i := range n {
		e, err := projections.NewFunctionUpdated("F1", projections.FunctionUpdated{Version: i + 2, Spec: function.Spec{Name: "fn", Image: "img", Description: big[:200]}})
		if err != nil {
			t.Fatal(err)
		}
		e.Data = json.RawMessage(fmt.Sprintf(`{"v":1,"version":%d,"name":"fn","image":"img","description":%q}`, i+2, big))
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(begin)
	// The server's write to it has been stalled since the buffers filled:
	// past its write deadline, it cuts the connection.
	time.Sleep(streamWriteWait + time.Second)
	// Now read what the server sent: a part of it, then the end.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	var lastID uint64
	count := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // the end of the response: the server ended the stream
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
			lastID, _ = strconv.ParseUint(id, 10, 64)
			count++
		}
	}
	if count == 0 || count >= n {
		t.Errorf("the slow subscriber got %d of %d events before it was cut off", count, n+1)
	}
	t.Logf("%d appends of 256 KiB took %v with a stalled subscriber; it got %d events", n, took, count)
	// It resumes where it stopped.
	_, rr := subscribe(t, srv.URL+"/events", strconv.FormatUint(lastID, 10))
	if ev := readSSE(t, rr, 1); len(ev) != 1 || ev[0].id != lastID+1 {
		t.Errorf("resume after %d: %+v", lastID, ev)
	}
}

// TestEventStreamHidesTriggerSecrets streams the registration of a
// function with an HMAC trigger: the event comes without the secret, and
// says what was taken out.
func TestEventStreamHidesTriggerSecrets(t *testing.T) {
	l, srv, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	e, err := projections.NewFunctionRegistered("F1", projections.FunctionRegistered{Spec: function.Spec{Name: "fn", Image: "img",
		HTTPTrigger: &function.HTTPTrigger{Auth: "hmac", HMACSecret: "a-very-secret-secret", HMACHeader: "X-Sig"}}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := projections.NewVersionPublished("F1", projections.VersionPublished{Number: 1, Revision: 1, ImageDigest: "sha256:x",
		Spec: function.Spec{Name: "fn", Image: "img", HTTPTrigger: &function.HTTPTrigger{Auth: "hmac", HMACSecret: "a-very-secret-secret", HMACHeader: "X-Sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), e, v); err != nil {
		t.Fatal(err)
	}
	_, r := subscribe(t, srv.URL+"/events?from=1", "")
	for range 2 {
		var line string
		for !strings.HasPrefix(line, "data: ") {
			if line, err = r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(line, "a-very-secret-secret") || !strings.Contains(line, `"redacted":["data.http_trigger.hmac_secret"]`) ||
			!strings.Contains(line, `"hmac_header":"X-Sig"`) {
			t.Errorf("streamed: %s", line)
		}
	}
}

// TestCatchUpIsNotCutOff reads a backlog several times larger than what
// the server holds for a subscriber, at the client's own pace: all of it
// arrives, in one stream.
func TestCatchUpIsNotCutOff(t *testing.T) {
	l, srv, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	register(t, l, "F1", "fn")
	big := strings.Repeat("y", 128<<10)
	for i := range 100 {
		e, err := projections.NewFunctionUpdated("F1", projections.FunctionUpdated{Version: i + 2, Spec: function.Spec{Name: "fn", Image: "img"}})
		if err != nil {
			t.Fatal(err)
		}
		e.Data = json.RawMessage(fmt.Sprintf(`{"v":1,"version":%d,"name":"fn","image":"img","description":%q}`, i+2, big))
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	_, r := subscribe(t, srv.URL+"/events?from=1", "")
	got := readSSE(t, r, 101)
	if len(got) != 101 || got[100].id != 101 {
		t.Errorf("caught up with %d of 101 events", len(got))
	}
}

// TestEventStreamResumesAfterLastEventID: Last-Event-ID is the last
// event the client received, and the stream resumes after it (with or
// without ?from=, which it overrides); ?from= is the first seq sent; a
// Last-Event-ID after which no seq can come is a 400, not "new events
// only".
func TestEventStreamResumesAfterLastEventID(t *testing.T) {
	l, srv, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	for i := range 4 {
		register(t, l, fmt.Sprintf("F%d", i), fmt.Sprintf("fn%d", i))
	}
	for _, c := range []struct {
		query, lastID string
		first         uint64
	}{
		{"?from=2", "", 2},
		{"", "2", 3},
		{"?from=1", "2", 3},
		{"", " 3 ", 4},
		{"", "0", 1},
	} {
		_, r := subscribe(t, srv.URL+"/events"+c.query, c.lastID)
		if got := readSSE(t, r, 1); len(got) != 1 || got[0].id != c.first || got[0].e.Seq != c.first {
			t.Errorf("%s, Last-Event-ID %q: %+v, want seq %d first", c.query, c.lastID, got, c.first)
		}
	}
	for _, bad := range []string{"18446744073709551615", "18446744073709551616", "-1", "x"} {
		resp, _ := subscribe(t, srv.URL+"/events", bad)
		if resp.StatusCode != 400 {
			t.Errorf("Last-Event-ID %s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// streamBudget is a memory budget of max bytes, whose refusals are plain
// errors (not function.ErrBusy).
type streamBudget struct {
	mu        sync.Mutex
	max, used int64
}

func (b *streamBudget) Reserve(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return errors.New("the budget is full")
	}
	b.used += n
	return nil
}

func (b *streamBudget) Release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

func (b *streamBudget) held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

var _ Budget = (*streamBudget)(nil)

// eventually polls cond for up to 10 s.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestEventStreamsAreBounded: the server serves DefaultMaxSubscribers
// streams at once and refuses one more with 429 and Retry-After; each
// reserves what it may hold of the memory budget while it is open, and a
// stream the budget cannot hold is refused with 429 too. A stream that
// ends gives back its slot and its reservation.
func TestEventStreamsAreBounded(t *testing.T) {
	l, err := eventlog.Open(filepath.Join(t.TempDir(), "events.db"), eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	budget := &streamBudget{max: int64(DefaultMaxSubscribers+10) * streamBytes}
	api := New(Options{Events: l, Views: projections.NewViews(l), Token: "tok", Budget: budget})
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.EndStreams()
		srv.Close()
		l.Close()
	})
	register(t, l, "F1", "fn")
	var open []*http.Response
	for range DefaultMaxSubscribers {
		resp, _ := subscribe(t, srv.URL+"/events?from=1", "")
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", len(open)+1, resp.StatusCode)
		}
		open = append(open, resp)
	}
	if got := budget.held(); got != DefaultMaxSubscribers*streamBytes {
		t.Errorf("%d streams hold %d bytes of the budget, want %d", len(open), got, DefaultMaxSubscribers*streamBytes)
	}
	resp, _ := subscribe(t, srv.URL+"/events?from=1", "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("one stream more than the most: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	open[0].Body.Close()
	if !eventually(func() bool { return budget.held() == (DefaultMaxSubscribers-1)*streamBytes }) {
		t.Fatalf("a closed stream still holds its reservation: %d", budget.held())
	}
	if resp, _ := subscribe(t, srv.URL+"/events?from=1", ""); resp.StatusCode != 200 {
		t.Errorf("once one closed: %d", resp.StatusCode)
	}
	for _, resp := range open[1:] {
		resp.Body.Close()
	}
	if !eventually(func() bool { return budget.held() == streamBytes }) {
		t.Fatalf("streams closed, %d bytes still held", budget.held())
	}

	// The budget holds one stream more, not two.
	budget.mu.Lock()
	budget.max = 2 * streamBytes
	budget.mu.Unlock()
	if resp, _ := subscribe(t, srv.URL+"/events", ""); resp.StatusCode != 200 {
		t.Fatalf("within the budget: %d", resp.StatusCode)
	}
	resp, _ = subscribe(t, srv.URL+"/events", "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
