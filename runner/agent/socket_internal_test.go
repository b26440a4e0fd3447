package agent

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its accepts with EMFILE, as a server out of
// descriptors sees them, while failing says so; then it accepts from the
// listener it wraps.
type failingListener struct {
	*net.UnixListener
	mu      sync.Mutex
	failing int // accepts left to fail; -1: every one
	calls   []time.Time
}

func (l *failingListener) AcceptUnix() (*net.UnixConn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	fail := l.failing != 0
	if l.failing > 0 {
		l.failing--
	}
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.UnixListener.AcceptUnix()
}

func (l *failingListener) accepts() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.calls...)
}

// testSession is a session on a socket of its own, served by serveSocket
// through a failingListener; served closes when serveSocket returns.
func testSession(t *testing.T, failing int) (s *session, ln *failingListener, logs *syncBuffer, served chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, socketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	h := &Host{logger: slog.New(slog.NewTextHandler(logs, nil))}
	secret := make([]byte, secretLen)
	for i := range secret {
		secret[i] = byte(i)
	}
	l := newLink(h, dir, secret, 1<<20)
	l.ln = ul
	s = newSession(h, Function{Name: "f"}, l)
	s.srv = newRAPIServer(s, h.logger)
	ln = &failingListener{UnixListener: ul, failing: failing}
	served = make(chan struct{})
	go func() {
		defer close(served)
		s.serveSocket(ln)
	}()
	t.Cleanup(func() {
		s.release()
		<-served
	})
	return s, ln, logs, served
}

// syncBuffer is a buffer for the log of a goroutine the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// An accept that fails, as it does when the server is out of descriptors,
// is tried again after a pause that doubles from 5 ms: the socket goes on
// taking the container's connections once descriptors are free again.
func TestAcceptErrorsDoNotEndTheSocket(t *testing.T) {
	const failures = 5
	s, ln, logs, served := testSession(t, failures)
	// The init's control connection, dialled while the accepts fail.
	u, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(s.dir, socketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write(append([]byte{kindControl, protocolVersion}, s.secret...)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.ctrlReady:
	case <-served:
		t.Fatal("serveSocket returned after an accept error")
	case <-time.After(10 * time.Second):
		t.Fatal("the control connection was not taken after the accept errors")
	}
	calls := ln.accepts()
	if len(calls) < failures+1 {
		t.Fatalf("%d accepts; want the %d that failed and one more", len(calls), failures)
	}
	// 5, 10, 20 and 40 ms between the failures, and 80 ms before the
	// accept that took the connection.
	want := acceptRetryMin
	for i := 1; i <= failures; i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < want {
			t.Errorf("accept %d came %v after the failure before it; want a pause of %v", i+1, gap, want)
		}
		want *= 2
	}
	if n := strings.Count(logs.String(), "cannot accept"); n != failures {
		t.Errorf("%d warnings logged for %d failed accepts:\n%s", n, failures, logs)
	}
	select {
	case <-served:
		t.Fatal("serveSocket returned")
	default:
	}
}

// A socket whose accepts keep failing pauses at most a second between
// them, and ends once the session releases it, even in a pause.
func TestAcceptRetriesEndWithTheSession(t *testing.T) {
	s, ln, _, served := testSession(t, -1)
	time.Sleep(3 * time.Second)
	calls := ln.accepts()
	// 5 ms doubling to a second: 5+10+...+640 ms is 1.275 s, then 1 s each.
	if n := len(calls); n < 8 || n > 11 {
		t.Errorf("%d accepts in 3 s; want the pauses to double up to 1 s", n)
	}
	for i := 2; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap > acceptRetryMax+200*time.Millisecond {
			t.Errorf("a pause of %v between accepts %d and %d; want at most %v", gap, i, i+1, acceptRetryMax)
		}
	}
	released := time.Now()
	s.release()
	select {
	case <-served:
		if d := time.Since(released); d > 200*time.Millisecond {
			t.Errorf("serveSocket returned %v after the release", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveSocket did not return after the release")
	}
}
