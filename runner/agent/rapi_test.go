package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/runner/engine"
)

// The lean server's tests drive it over socket pairs with raw requests,
// and compare what it answers with what net/http's server answers to the
// same bytes, through netHTTPRAPI, for the same handler.

const rapiWait = 10 * time.Second

// socketPair returns both ends of a Unix stream socket pair: unlike TCP's,
// its end that closes with input unread loses no output the other end has
// not read yet, so that what a server answers before it hangs up is seen
// whole.
func socketPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "rapi")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	client, server = conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { client.Close() })
	return client, server
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1, as the
// runtime's connections are.
func loopbackPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, server
}

// netHTTPRAPI serves a rapiHandler with net/http's server, as the session
// was served before the lean server: the measure the tests and the
// benchmark hold the lean server to.
type netHTTPRAPI struct{ h rapiHandler }

func (a netHTTPRAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := &netHTTPPeer{w: w}
	resp := &rapiResponse{peer: p}
	req := &rapiRequest{ctx: r.Context(), method: r.Method, path: []byte(r.URL.Path),
		errType: r.Header.Get("Lambda-Runtime-Function-Error-Type"), contentLength: r.ContentLength, body: r.Body, peer: p}
	a.h.serveRAPI(resp, req)
	if resp.status != 0 || len(resp.head) > 0 || len(resp.body) > 0 {
		p.send(resp)
	}
}

type netHTTPPeer struct{ w http.ResponseWriter }

func (p *netHTTPPeer) watch() {}

func (p *netHTTPPeer) send(w *rapiResponse) error {
	if w.sent {
		return w.err
	}
	w.sent = true
	h := p.w.Header()
	for line := range bytes.SplitSeq(bytes.TrimSuffix(w.head, []byte("\r\n")), []byte("\r\n")) {
		if name, value, ok := bytes.Cut(line, []byte(": ")); ok {
			h[fieldNameString(name)] = []string{string(value)}
		}
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	p.w.WriteHeader(status)
	_, w.err = p.w.Write(w.body)
	return w.err
}

// fieldNameString spares the adapter the allocation of the usual names,
// as net/http's handlers have them as constants.
func fieldNameString(b []byte) string {
	for _, n := range []string{"Allow", "Connection", "Content-Length", "Content-Type", "Lambda-Runtime-Aws-Request-Id",
		"Lambda-Runtime-Deadline-Ms", "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id"} {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

var discardLog = log.New(io.Discard, "", 0)

// newNetHTTP is the session's server as it was.
func newNetHTTP(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: discardLog}
}

// serveOne serves conn with serve, through a connQueue as the session's
// server gets its connections.
func serveOne(t testing.TB, conn net.Conn, serve func(q *connQueue), stop func()) {
	t.Helper()
	q := newConnQueue()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(q)
	}()
	if !q.put(conn) {
		t.Fatal("the queue refused the connection")
	}
	t.Cleanup(func() {
		q.Close()
		stop()
		<-done
	})
}

// leanClient serves a fresh connection with srv, and returns the
// runtime's end.
func leanClient(t testing.TB, srv *rapiServer) *net.UnixConn {
	client, server := socketPair(t)
	serveOne(t, server, func(q *connQueue) { srv.serve(q) }, func() { srv.Close() })
	return client
}

// netHTTPClient serves a fresh connection with net/http's server, as the
// session's was, and h, and returns the runtime's end.
func netHTTPClient(t testing.TB, h rapiHandler) *net.UnixConn {
	client, server := socketPair(t)
	hs := newNetHTTP(netHTTPRAPI{h})
	serveOne(t, server, func(q *connQueue) { hs.Serve(q) }, func() { hs.Close() })
	return client
}

// exchange writes input, closes the sending side, and reads all that
// comes back until the server hangs up.
func exchange(t *testing.T, c *net.UnixConn, input string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(rapiWait))
	go func() {
		if _, err := io.WriteString(c, input); err == nil {
			c.CloseWrite()
		}
	}()
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the answers: %v (after %q)", err, out)
	}
	return string(out)
}

var dateField = regexp.MustCompile("\r\nDate: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n")

func withoutDates(s string) string { return dateField.ReplaceAllString(s, "\r\nDate: (now)\r\n") }

// echo answers a request with what it read of it, by its path.
type echo struct {
	release chan struct{} // /wait waits for it
	hangups atomic.Int32  // /wait saw its runtime hang up
	sendErr chan error    // /send's
}

func newEcho() *echo {
	return &echo{release: make(chan struct{}), sendErr: make(chan error, 16)}
}

// wantHangUps waits for /wait to have seen n hang-ups.
func (e *echo) wantHangUps(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(rapiWait)
	for e.hangups.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d hang-ups seen; want %d", e.hangups.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *echo) serveRAPI(w *rapiResponse, r *rapiRequest) {
	switch string(r.path) {
	case "/noread":
		w.header("Content-Type", "text/plain")
		w.WriteString("not read\n")
	case "/partial":
		buf := make([]byte, 10)
		n, err := io.ReadFull(r.body, buf)
		w.header("Content-Type", "text/plain")
		fmt.Fprintf(w, "read %q %v\n", buf[:n], err)
	case "/toolarge":
		b, err := r.readBody(16)
		w.header("Connection", "close")
		w.header("Content-Type", "text/plain")
		w.writeHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprintf(w, "%d %v\n", len(b), err)
	case "/wait":
		r.watch()
		select {
		case <-r.ctx.Done():
			e.hangups.Add(1)
			return
		case <-e.release:
		}
		w.header("Content-Type", "text/plain")
		w.WriteString("released\n")
	case "/waitsend":
		r.watch()
		<-r.ctx.Done()
		w.header("Content-Type", "text/plain")
		w.WriteString("too late\n")
		e.sendErr <- w.send()
	case "/send":
		w.headerInt("Content-Length", 5)
		w.header("Content-Type", "text/plain")
		w.setBody([]byte("sent\n"))
		e.sendErr <- w.send()
	case "/empty":
	default:
		b, err := r.readBody(1 << 20)
		w.header("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s len=%d crc=%08x type=%q err=%v\n", r.method, r.path, len(b), crc32.ChecksumIEEE(b), r.errType, err)
	}
}

const host = "Host: 127.0.0.1:9001\r\n"

// rapiCases are raw requests, alone or in a row on one connection, whose
// answers the lean server must give as net/http's did, byte for byte but
// the Date.
var rapiCases = []struct{ name, input string }{
	{"nothing", ""},
	{"GET", "GET /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"keep-alive, pipelined", "GET /a HTTP/1.1\r\n" + host + "\r\n" + "POST /b HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" +
		"GET /c HTTP/1.1\r\n" + host + "\r\n"},
	{"content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 11\r\n\r\nhello world"},
	{"bare LF lines", "POST /echo HTTP/1.1\n" + host[:len(host)-2] + "\ncontent-length: 3\n\nabc"},
	{"same content-length twice", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length:  3 \r\n\r\nabc"},
	{"two content-lengths", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
	{"bad content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\nabc"},
	{"empty content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length:\r\n\r\n"},
	{"huge content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999\r\n\r\n"},
	{"chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"chunked, case and spaces", "POST /echo HTTP/1.1\r\n" + host + "transfer-encoding:  Chunked\r\n\r\n" +
		"A  \r\n0123456789\r\n0\r\n\r\n"},
	{"chunked with a trailer", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"trailer field without a colon", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"3\r\nabc\r\n0\r\nX-Sum\r\n\r\n"},
	{"trailer folded onto its first line", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\n X-Sum: 1\r\n\r\n"},
	{"trailer folded, long first line", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\n X-Sum: " + strings.Repeat("s", 90) + "\r\n\r\n"},
	{"trailer folded with a bad byte", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nX-Sum: 1 \r\n \t more\x01 \r\n  \r\n\r\n"},
	{"trailer with a bad name", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nX(Sum): 1\r\n\tfolded\r\n\r\n"},
	{"trailer with a spaced name", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nX Sum : 1\r\n\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"trailer, a lower-case name and a bad value", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nx-sum:\tre\x01 \r\n  \r\n\r\n"},
	{"trailer, a spaced lower-case name and a bad value", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nx sum: 1\x01\r\n\r\n"},
	// Lines of a trailer may end in a bare LF, as textproto reads them:
	// its end is the first empty line, whatever its line end, and what
	// follows is the next request.
	{"trailer ended by a bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nm:\r\n\nre\x01 \r\n  \r\n\r\n"},
	{"trailer of bare LFs", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\nx-a: 1\nx-b: 2\n\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"empty trailer of a bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"chunked over content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3\r\nabc\r\n0\r\n\r\n"},
	{"chunked, bad content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"chunked, bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"},
	{"chunked, bad size", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
	{"chunked, no CRLF after data", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"},
	{"chunked, cut short", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n10\r\nabc"},
	{"chunked, size past 1<<63", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"},
	{"chunked, size too large", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n12345678901234567\r\n"},
	{"chunked, forbidden trailer", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTrailer: a, Content-Length\r\n\r\n0\r\n\r\n"},
	{"gzip", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n"},
	{"two transfer-encodings", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"HTTP/1.0 ignores transfer-encoding", "POST /echo HTTP/1.0\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nhi"},
	{"body cut short", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\n0123456789"},
	{"body left unread", "POST /noread HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\n0123456789" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"chunked body left unread", "POST /noread HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"body left half read", "POST /partial HTTP/1.1\r\n" + host + "Content-Length: 20\r\n\r\n01234567890123456789" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"large body left unread", "POST /noread HTTP/1.1\r\n" + host + "Content-Length: 300000\r\n\r\n" + strings.Repeat("x", 300000) +
		"GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"large chunked body left unread", "POST /noread HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		strings.Repeat("1000\r\n"+strings.Repeat("y", 0x1000)+"\r\n", 70) + "0\r\n\r\n"},
	{"handler closes", "POST /toolarge HTTP/1.1\r\n" + host + "Content-Length: 40\r\n\r\n" + strings.Repeat("z", 40) + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"handler closes, HTTP/1.0", "POST /toolarge HTTP/1.0\r\nContent-Length: 4\r\n\r\nzzzz"},
	{"handler says nothing", "GET /empty HTTP/1.1\r\n" + host + "\r\n" + "GET /empty HTTP/1.0\r\n\r\n"},
	{"handler sends", "GET /send HTTP/1.1\r\n" + host + "\r\n" + "HEAD /send HTTP/1.1\r\n" + host + "\r\n"},
	{"connection: close", "GET /echo HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n" + "GET /never HTTP/1.1\r\n" + host + "\r\n"},
	{"connection: Keep-Alive, CLOSE", "GET /echo HTTP/1.1\r\n" + host + "Connection: Keep-Alive, CLOSE\r\n\r\n" + "GET /never HTTP/1.1\r\n" + host + "\r\n"},
	{"close in a later connection field", "GET /echo HTTP/1.1\r\n" + host + "Connection: te\r\nConnection: close\r\n\r\n" +
		"GET /never HTTP/1.1\r\n" + host + "\r\n"},
	{"HTTP/1.0", "GET /echo HTTP/1.0\r\n\r\n" + "GET /never HTTP/1.0\r\n\r\n"},
	{"HTTP/1.0 keep-alive", "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /again HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" +
		"GET /last HTTP/1.0\r\n\r\n" + "GET /never HTTP/1.0\r\n\r\n"},
	{"HTTP/1.2", "GET /echo HTTP/1.2\r\n" + host + "\r\n"},
	{"HTTP/2.0", "GET /echo HTTP/2.0\r\n" + host + "\r\n"},
	{"HTTP/0.9", "GET /echo HTTP/0.9\r\n\r\n"},
	{"bad version", "GET /echo HTTP/1.x\r\n" + host + "\r\n"},
	{"no version", "GET /echo\r\n" + host + "\r\n"},
	{"bad method", "G(T /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"empty target", "GET  HTTP/1.1\r\n" + host + "\r\n"},
	{"target with control byte", "GET /a\x7fb HTTP/1.1\r\n" + host + "\r\n"},
	{"escaped target", "GET /a%2Fb%20c HTTP/1.1\r\n" + host + "\r\n"},
	{"bad escape", "GET /a%zz HTTP/1.1\r\n" + host + "\r\n"},
	{"query and fragment", "GET /a?x=1#f HTTP/1.1\r\n" + host + "\r\n" + "GET /b#f?x HTTP/1.1\r\n" + host + "\r\n"},
	{"absolute target", "GET http://example.com/abs?q HTTP/1.1\r\n" + host + "\r\n"},
	{"star", "GET * HTTP/1.1\r\n" + host + "\r\n" + "OPTIONS * HTTP/1.1\r\n" + host + "\r\n"},
	{"not a path", "GET nopath HTTP/1.1\r\n" + host + "\r\n"},
	{"non-ASCII path", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n"},
	{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\n\r\n"},
	{"HEAD", "HEAD /echo HTTP/1.1\r\n" + host + "\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"HEAD, HTTP/1.0 keep-alive", "HEAD /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /after HTTP/1.0\r\n\r\n"},
	{"no host", "GET /echo HTTP/1.1\r\n\r\n"},
	{"two hosts", "GET /echo HTTP/1.1\r\n" + host + host + "\r\n"},
	{"bad host", "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n"},
	{"empty host", "GET /echo HTTP/1.1\r\nHost:\r\n\r\n"},
	{"name with a space", "GET /echo HTTP/1.1\r\n" + host + "Bad Name: x\r\n\r\n"},
	{"name with a space before the colon", "GET /echo HTTP/1.1\r\n" + host + "Content-Length : 3\r\n\r\nabc"},
	{"name with a bad byte", "GET /echo HTTP/1.1\r\n" + host + "Bad(Name): x\r\n\r\n"},
	{"empty name", "GET /echo HTTP/1.1\r\n" + host + ": x\r\n\r\n"},
	{"no colon", "GET /echo HTTP/1.1\r\n" + host + "NoColon\r\n\r\n"},
	{"control byte in a value", "GET /echo HTTP/1.1\r\n" + host + "X: a\x01b\r\n\r\n"},
	{"CR in a value", "GET /echo HTTP/1.1\r\n" + host + "X: a\rb\r\n\r\n"},
	{"obs-text in a value", "GET /echo HTTP/1.1\r\n" + host + "X: caf\xc3\xa9\r\n\r\n"},
	{"first field folded", "GET /echo HTTP/1.1\r\n " + host + "\r\n"},
	{"folded field", "POST /echo HTTP/1.1\r\n" + host + "Lambda-Runtime-Function-Error-Type: Runtime.\r\n  Folded\r\n\tAgain\r\nContent-Length: 1\r\n\r\nx"},
	{"folded content-length", "POST /echo HTTP/1.1\r\n" + host + "Content-Length:\r\n 3\r\n\r\nabc"},
	{"error type, in any case", "POST /echo HTTP/1.1\r\n" + host + "lambda-RUNTIME-function-error-type:  Runtime.X  \r\n" +
		"Lambda-Runtime-Function-Error-Type: Second\r\nContent-Length: 2\r\n\r\n{}"},
	{"expect 100-continue", "POST /echo HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"expect 100-continue, chunked", "POST /echo HTTP/1.1\r\n" + host + "Expect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
	{"expect 100-continue, unread", "POST /noread HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /never HTTP/1.1\r\n" + host + "\r\n"},
	{"expect 100-continue, no body", "GET /echo HTTP/1.1\r\n" + host + "Expect: 100-continue\r\n\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"expect 100-continue, HTTP/1.0", "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"},
	{"other expectation", "POST /echo HTTP/1.1\r\n" + host + "Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi"},
	{"empty expectation", "POST /echo HTTP/1.1\r\n" + host + "Expect:\r\nContent-Length: 2\r\n\r\nhi"},
	{"CRLF after a POST", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n"},
	{"CRLF after a GET", "GET /echo HTTP/1.1\r\n" + host + "\r\n\r\n" + "GET /never HTTP/1.1\r\n" + host + "\r\n"},
	{"request line cut short", "GET /ec"},
	{"head cut short", "GET /echo HTTP/1.1\r\n" + host},
	{"long field", "GET /echo HTTP/1.1\r\n" + host + "X-Long: " + strings.Repeat("l", 60<<10) + "\r\n\r\n"},
	{"many fields", "GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-Field: some value\r\n", 3000) + "\r\n"},
	{"head over the bound", "GET /echo HTTP/1.1\r\n" + host + "X-Long: " + strings.Repeat("l", 70<<10) + "\r\n\r\n"},
	{"fields over the bound", "GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-Field: some value\r\n", 4000) + "\r\n"},
	{"long path", "GET /" + strings.Repeat("p", 1500) + " HTTP/1.1\r\n" + host + "\r\n"},
}

func TestRAPIAnswersAsNetHTTP(t *testing.T) {
	for _, tc := range rapiCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := withoutDates(exchange(t, netHTTPClient(t, newEcho()), tc.input))
			got := exchange(t, leanClient(t, leanServer(newEcho())), tc.input)
			if n := strings.Count(got, "\r\nDate: "); n != strings.Count(want, "\r\nDate: ") {
				t.Errorf("%d Date fields; want one a response", n)
			}
			if got = withoutDates(got); got != want {
				t.Errorf("the lean server answered\n%s\nnet/http answered\n%s", clip(got), clip(want))
			}
		})
	}
}

// FuzzRAPIAnswersAsNetHTTP holds the lean server to net/http's answers
// for any input; go test runs it on rapiCases.
func FuzzRAPIAnswersAsNetHTTP(f *testing.F) {
	for _, tc := range rapiCases {
		f.Add(tc.input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if strings.Contains(input, "/wait") {
			// A hang-up there is answered differently, on purpose.
			t.Skip()
		}
		want := withoutDates(exchange(t, netHTTPClient(t, newEcho()), input))
		got := withoutDates(exchange(t, leanClient(t, leanServer(newEcho())), input))
		if got != want {
			t.Errorf("the lean server answered\n%s\nnet/http answered\n%s", clip(got), clip(want))
		}
	})
}

func clip(s string) string {
	if len(s) > 2000 {
		return fmt.Sprintf("%q ... (%d bytes)", s[:2000], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// leanServer is a lean server of h.
func leanServer(h rapiHandler) *rapiServer {
	return newRAPIServer(h, slog.New(slog.DiscardHandler))
}

// readResponse reads one response from br, which must be status.
func readResponse(t *testing.T, br *bufio.Reader, status int) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response's body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if resp.StatusCode != status {
		t.Fatalf("status %d (%s); want %d", resp.StatusCode, body, status)
	}
	return resp
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// wantHangUp checks that the server closes c, having said nothing.
func wantHangUp(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the connection closed within %v", n, err, within)
	}
}

// 100 Continue comes before the body is read, and so before the runtime
// sends it.
func TestRAPIContinueBeforeTheBody(t *testing.T) {
	c := leanClient(t, leanServer(newEcho()))
	c.SetDeadline(time.Now().Add(rapiWait))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /echo HTTP/1.1\r\n"+host+"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	readResponse(t, br, http.StatusContinue)
	io.WriteString(c, "hello")
	if got := bodyOf(readResponse(t, br, http.StatusOK)); !strings.Contains(got, "len=5") {
		t.Fatalf("body %q", got)
	}
	// A runtime that sends no body is answered without waiting for one,
	// and the connection closes, since what follows may be the body.
	io.WriteString(c, "POST /noread HTTP/1.1\r\n"+host+"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if resp := readResponse(t, br, http.StatusOK); !resp.Close {
		t.Fatal("no Connection: close")
	}
	wantHangUp(t, c, 2*rapiLinger+time.Second)
}

// A handler that watches sees its context end when the runtime hangs up,
// or when the server closes; a runtime that pipelines its next request
// does not end it, and that request is served after.
func TestRAPIWatch(t *testing.T) {
	t.Run("hang-up", func(t *testing.T) {
		e := newEcho()
		c := leanClient(t, leanServer(e))
		io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Close()
		e.wantHangUps(t, 1)
	})
	t.Run("half-close", func(t *testing.T) {
		e := newEcho()
		c := leanClient(t, leanServer(e))
		io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\n")
		c.CloseWrite()
		// net/http would answer 200 with no body; nothing is better.
		wantHangUp(t, c, rapiWait)
		e.wantHangUps(t, 1)
	})
	t.Run("server closes", func(t *testing.T) {
		e := newEcho()
		srv := leanServer(e)
		c := leanClient(t, srv)
		io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\n")
		time.Sleep(50 * time.Millisecond)
		srv.Close()
		wantHangUp(t, c, rapiWait)
		e.wantHangUps(t, 1)
	})
	t.Run("pipelined", func(t *testing.T) {
		e := newEcho()
		c := leanClient(t, leanServer(e))
		c.SetDeadline(time.Now().Add(rapiWait))
		io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\nGET /second HTTP/1.1\r\n"+host+"\r\n")
		time.Sleep(50 * time.Millisecond)
		close(e.release)
		br := bufio.NewReader(c)
		if got := bodyOf(readResponse(t, br, http.StatusOK)); got != "released\n" {
			t.Fatalf("first body %q", got)
		}
		if got := bodyOf(readResponse(t, br, http.StatusOK)); !strings.Contains(got, "GET /second") {
			t.Fatalf("second body %q", got)
		}
		if e.hangups.Load() != 0 {
			t.Fatal("a pipelined request ended the first's context")
		}
	})
	t.Run("wait after wait", func(t *testing.T) {
		e := newEcho()
		c := leanClient(t, leanServer(e))
		c.SetDeadline(time.Now().Add(rapiWait))
		br := bufio.NewReader(c)
		close(e.release)
		for range 3 {
			io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\n")
			if got := bodyOf(readResponse(t, br, http.StatusOK)); got != "released\n" {
				t.Fatalf("body %q", got)
			}
		}
	})
}

// A request's head must come within the timeout of its first byte; the
// wait for a request has no bound, nor has a body.
func TestRAPITimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	client := func(t *testing.T) *net.UnixConn {
		srv := leanServer(newEcho())
		srv.headerTimeout = timeout
		return leanClient(t, srv)
	}
	t.Run("stalled head", func(t *testing.T) {
		c := client(t)
		io.WriteString(c, "GET /echo HTTP/1.1\r\n"+host)
		wantHangUp(t, c, 2*time.Second)
	})
	t.Run("no first request", func(t *testing.T) {
		c := client(t)
		wantHangUp(t, c, 2*time.Second)
	})
	t.Run("idle, and a slow body", func(t *testing.T) {
		c := client(t)
		c.SetDeadline(time.Now().Add(rapiWait))
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /echo HTTP/1.1\r\n"+host+"\r\n")
		readResponse(t, br, http.StatusOK)
		time.Sleep(3 * timeout)
		io.WriteString(c, "POST /echo HTTP/1.1\r\n"+host+"Content-Length: 4\r\n\r\nab")
		time.Sleep(3 * timeout)
		io.WriteString(c, "cd")
		if got := bodyOf(readResponse(t, br, http.StatusOK)); !strings.Contains(got, "len=4") {
			t.Fatalf("body %q", got)
		}
		// The head's time begins with its first byte, even split.
		io.WriteString(c, "GET /echo HTTP/1.1\r\n")
		time.Sleep(timeout / 2)
		io.WriteString(c, host+"\r\n")
		readResponse(t, br, http.StatusOK)
	})
}

// countingConn counts the writes to it.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Each response goes in one write.
func TestRAPIOneWriteAResponse(t *testing.T) {
	client, server := socketPair(t)
	counted := &countingConn{Conn: server}
	srv := leanServer(newEcho())
	serveOne(t, counted, func(q *connQueue) { srv.serve(q) }, func() { srv.Close() })
	client.SetDeadline(time.Now().Add(rapiWait))
	br := bufio.NewReader(client)
	const n = 5
	for i := range n {
		fmt.Fprintf(client, "POST /echo HTTP/1.1\r\n"+host+"Content-Length: %d\r\n\r\n%s", i, strings.Repeat("b", i))
		readResponse(t, br, http.StatusOK)
	}
	io.WriteString(client, "GET /send HTTP/1.1\r\n"+host+"\r\n")
	readResponse(t, br, http.StatusOK)
	if got := counted.writes.Load(); got != n+1 {
		t.Errorf("%d writes for %d responses", got, n+1)
	}
}

// A handler's send reports that the runtime is gone.
func TestRAPISendError(t *testing.T) {
	e := newEcho()
	c := leanClient(t, leanServer(e))
	io.WriteString(c, "GET /waitsend HTTP/1.1\r\n"+host+"\r\n")
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-e.sendErr:
		if err == nil {
			t.Fatal("send to a runtime that hung up: no error")
		}
	case <-time.After(rapiWait):
		t.Fatal("no send")
	}
}

// rawSession is a session on no socket: a goroutine plays its init,
// answering each flush with no logs, and conn gives it a connection of its
// runtime's, served by the lean server or, for comparison, by net/http's.
type rawSession struct {
	*session
	t testing.TB
}

func newRawSession(t testing.TB, netHTTP bool) *rawSession {
	t.Helper()
	h := &Host{logger: slog.New(slog.DiscardHandler), opts: Options{Region: DefaultRegion}}
	l := newLink(h, t.TempDir(), make([]byte, secretLen), 1<<20)
	s := newSession(h, Function{Name: "raw"}, l)
	s.c = &rawContainer{exited: make(chan struct{})}
	s.srv = newRAPIServer(s, h.logger)
	ctrl, init := socketPair(t)
	if !s.attachControl(ctrl) {
		t.Fatal("the control connection was refused")
	}
	go playInit(init)
	served := make(chan struct{})
	if netHTTP {
		hs := newNetHTTP(netHTTPRAPI{s})
		go func() {
			defer close(served)
			hs.Serve(s.conns)
		}()
		t.Cleanup(func() { hs.Close() })
	} else {
		go func() {
			defer close(served)
			s.srv.serve(s.conns)
		}()
	}
	t.Cleanup(func() {
		s.markDead()
		s.release()
		init.Close()
		<-served
	})
	return &rawSession{session: s, t: t}
}

// conn gives the session a runtime's connection, and returns its end.
func (s *rawSession) conn() *net.TCPConn {
	client, server := loopbackPair(s.t)
	if !s.conns.put(server) {
		s.t.Fatal("the session refused the connection")
	}
	client.SetDeadline(time.Now().Add(time.Minute))
	return client
}

// playInit answers the server's flushes, with no logs, until the
// connection closes; it allocates nothing.
func playInit(c *net.UnixConn) {
	head := make([]byte, 5)
	logs := []byte{frameLogs, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}
	for {
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		if head[0] == frameFlush {
			if _, err := c.Write(logs); err != nil {
				return
			}
		}
	}
}

type rawContainer struct{ exited chan struct{} }

func (c *rawContainer) ID() string                            { return "raw" }
func (c *rawContainer) ImageDigest() string                   { return "sha256:raw" }
func (c *rawContainer) Exited() <-chan struct{}               { return c.exited }
func (c *rawContainer) ExitState(context.Context) (int, bool) { return 0, false }
func (c *rawContainer) Close(context.Context)                 {}

func noStart(string, string) error { return nil }

type doneDo struct {
	res engine.Result
	err error
}

func (s *rawSession) goDo(id string, event []byte) <-chan doneDo {
	ch := make(chan doneDo, 1)
	go func() {
		res, err := s.Do(context.Background(), id, event, rapiWait, noStart)
		ch <- doneDo{res, err}
	}()
	return ch
}

func recvDo(t *testing.T, ch <-chan doneDo) doneDo {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(rapiWait):
		t.Fatal("Do did not return")
		return doneDo{}
	}
}

// A runtime may answer with a chunked body, or after 100 Continue.
func TestRAPISessionBodies(t *testing.T) {
	s := newRawSession(t, false)
	c := s.conn()
	br := bufio.NewReader(c)
	d := s.goDo("inv-1", []byte(`{"n":1}`))
	io.WriteString(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"+host+"\r\n")
	resp := readResponse(t, br, http.StatusOK)
	if id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id"); id != "inv-1" || bodyOf(resp) != `{"n":1}` {
		t.Fatalf("next: id %q", id)
	}
	io.WriteString(c, "POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\n"+host+
		"Transfer-Encoding: chunked\r\n\r\n6\r\n\"chun\"\r\n3\r\nked\r\n0\r\n\r\n")
	if got := bodyOf(readResponse(t, br, http.StatusAccepted)); got != "{\"status\":\"OK\"}\n" {
		t.Fatalf("body %q", got)
	}
	if got := recvDo(t, d); got.err != nil || string(got.res.Stdout) != `"chun"ked` {
		t.Fatalf("Do: %q, %v", got.res.Stdout, got.err)
	}

	d = s.goDo("inv-2", []byte(`{"n":2}`))
	io.WriteString(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"+host+"\r\n")
	readResponse(t, br, http.StatusOK)
	io.WriteString(c, "POST /2018-06-01/runtime/invocation/inv-2/error HTTP/1.1\r\n"+host+
		"Expect: 100-continue\r\nlambda-runtime-function-error-type: Fn.Err\r\nContent-Length: 2\r\n\r\n")
	readResponse(t, br, http.StatusContinue)
	io.WriteString(c, "{}")
	readResponse(t, br, http.StatusAccepted)
	if got := recvDo(t, d); got.err != nil || got.res.FunctionError == nil || got.res.FunctionError.Type != "Fn.Err" {
		t.Fatalf("Do: %+v, %v", got.res.FunctionError, got.err)
	}
}

// A runtime that hangs up while its next waits takes no invocation with
// it: the next runtime's next has it.
func TestRAPISessionNextHangUp(t *testing.T) {
	s := newRawSession(t, false)
	gone := s.conn()
	io.WriteString(gone, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"+host+"\r\n")
	time.Sleep(50 * time.Millisecond)
	gone.Close()
	deadline := time.Now().Add(rapiWait)
	for {
		s.conns.mu.Lock()
		open := s.conns.open
		s.conns.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection of the runtime that hung up is still served")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := s.conn()
	br := bufio.NewReader(c)
	d := s.goDo("inv-1", []byte(`1`))
	io.WriteString(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"+host+"\r\n")
	readResponse(t, br, http.StatusOK)
	io.WriteString(c, "POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\n"+host+"Content-Length: 1\r\n\r\n2")
	readResponse(t, br, http.StatusAccepted)
	if got := recvDo(t, d); got.err != nil || string(got.res.Stdout) != "2" {
		t.Fatalf("Do: %q, %v", got.res.Stdout, got.err)
	}
}

var variableFields = regexp.MustCompile("\r\n(Lambda-Runtime-Deadline-Ms|Lambda-Runtime-Trace-Id): [^\r]*")

// The session's answers are net/http's, field for field, but the Date and
// the fields that change with each invocation.
func TestRAPISessionAnswersAsNetHTTP(t *testing.T) {
	next := "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + host + "\r\n"
	for _, tc := range []struct {
		name  string
		steps []string
		do    bool // an invocation waits for the runtime
	}{
		{"misuse", []string{
			"GET / HTTP/1.1\r\n" + host + "\r\n",
			"POST /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
			"GET /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\n" + host + "\r\n",
			"POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
			"POST /2018-06-01/runtime/invocation//error HTTP/1.1\r\n" + host + "\r\n",
			"HEAD /2018-06-01/runtime/init/error HTTP/1.1\r\n" + host + "\r\n",
			"POST /2018-06-01/runtime/init/error HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
			next,
		}, false},
		{"an invocation", []string{
			next,
			"POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\n" + host + "Content-Length: 4\r\n\r\n\"ok\"",
			"POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\n" + host + "Content-Length: 4\r\n\r\n\"ok\"",
		}, true},
		{"a payload too large", []string{
			next,
			"POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\n" + host + "Content-Length: " +
				strconv.Itoa(MaxPayload+10) + "\r\n\r\n" + strings.Repeat("p", MaxPayload+10),
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answers [2]string
			for i, netHTTP := range []bool{false, true} {
				s := newRawSession(t, netHTTP)
				c := s.conn()
				var raw bytes.Buffer
				br := bufio.NewReader(io.TeeReader(c, &raw))
				var d <-chan doneDo
				if tc.do {
					d = s.goDo("inv-1", []byte(`{"event":true}`))
				}
				for _, step := range tc.steps {
					go io.WriteString(c, step)
					method, _, _ := strings.Cut(step, " ")
					resp, err := http.ReadResponse(br, &http.Request{Method: method})
					if err != nil {
						t.Fatalf("%.40q: %v", step, err)
					}
					io.Copy(io.Discard, resp.Body)
				}
				if d != nil {
					recvDo(t, d)
				}
				answers[i] = variableFields.ReplaceAllString(withoutDates(raw.String()), "\r\n$1: (varies)")
			}
			if answers[0] != answers[1] {
				t.Errorf("the lean server answered\n%s\nnet/http answered\n%s", clip(answers[0]), clip(answers[1]))
			}
		})
	}
}

// benchRoutes answers next and response as the session does, with
// nothing behind them: what the benchmark measures of it is the server's
// part alone. With wait, its next watches for a hang-up, as a next that
// waits for its invocation does.
type benchRoutes struct {
	event []byte
	wait  bool
}

const (
	benchID    = "inv-bench"
	benchARN   = "arn:aws:lambda:us-east-1:000000000000:function:bench"
	benchTrace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
)

func (b *benchRoutes) serveRAPI(w *rapiResponse, r *rapiRequest) {
	if string(r.path) == apiBase+"invocation/next" {
		if b.wait {
			r.watch()
		}
		w.headerInt("Content-Length", int64(len(b.event)))
		w.header("Content-Type", "application/json")
		w.header("Lambda-Runtime-Aws-Request-Id", benchID)
		w.headerInt("Lambda-Runtime-Deadline-Ms", time.Now().Add(time.Minute).UnixMilli())
		w.header("Lambda-Runtime-Invoked-Function-Arn", benchARN)
		w.header("Lambda-Runtime-Trace-Id", benchTrace)
		w.writeHeader(http.StatusOK)
		w.setBody(b.event)
		w.send()
		return
	}
	r.readBody(MaxPayload + 1)
	accepted(w)
}

// ServeHTTP is the same, as the session's ServeHTTP wrote it before.
func (b *benchRoutes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == apiBase+"invocation/next" {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Lambda-Runtime-Aws-Request-Id", benchID)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", benchARN)
		h.Set("Lambda-Runtime-Trace-Id", benchTrace)
		h.Set("Content-Length", strconv.Itoa(len(b.event)))
		w.WriteHeader(http.StatusOK)
		w.Write(b.event)
		return
	}
	io.ReadAll(io.LimitReader(r.Body, MaxPayload+1))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`+"\n")
}

// benchRuntime is a runtime that asks and answers with requests made once,
// as aws-lambda-go's client sends them, and reads the answers with no
// allocation.
type benchRuntime struct {
	c        net.Conn
	br       *bufio.Reader
	next     []byte
	response []byte
}

func newBenchRuntime(c net.Conn, payload []byte) *benchRuntime {
	const fields = "Host: 127.0.0.1:9001\r\nUser-Agent: aws-lambda-go/go1.26\r\n"
	return &benchRuntime{c: c, br: bufio.NewReader(c),
		next: []byte("GET " + apiBase + "invocation/next HTTP/1.1\r\n" + fields + "Accept-Encoding: gzip\r\n\r\n"),
		response: []byte("POST " + apiBase + "invocation/" + benchID + "/response HTTP/1.1\r\n" + fields +
			"Content-Length: " + strconv.Itoa(len(payload)) + "\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n" + string(payload))}
}

// roundTrip sends req and reads the answer, which must be status.
func (rt *benchRuntime) roundTrip(req []byte, status int) error {
	if _, err := rt.c.Write(req); err != nil {
		return err
	}
	return rt.read(status)
}

// read reads an answer, which must be status.
func (rt *benchRuntime) read(status int) error {
	line, err := rt.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || int(line[9]-'0')*100+int(line[10]-'0')*10+int(line[11]-'0') != status {
		return fmt.Errorf("answered %q; want %d", line, status)
	}
	length := 0
	for {
		line, err := rt.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && equalFold(line[:15], "content-length:") {
			for _, c := range bytes.TrimSpace(line[15:]) {
				length = length*10 + int(c-'0')
			}
		}
	}
	_, err = rt.br.Discard(length)
	return err
}

// cpuClock reads the CPU time the process has used, which a ping-pong's
// ns/op, mostly waits for the scheduler's wake-ups, does not show.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

// report gives the CPU time of an op: the runtime's, the server's and the
// rest of the process's, which the servers' comparison shares.
func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRuntimeAPI measures one invocation's next and response, as a
// runtime on a keep-alive TCP connection sends them, on the lean server and
// on net/http's: "routes" with handlers that only answer (the servers' own
// cost; "lean-waited" with the watch of a next that waited for its
// invocation), "routes-pipelined" the same a batch at a time (the cost of
// the requests' work, with no wake-up between them), "session" through the
// session (Do, its flushes of the init's logs, its channels), the same
// handler on both servers. cpu-ns/op is the process's CPU time an op.
func BenchmarkRuntimeAPI(b *testing.B) {
	event := []byte(`{"version":"2.0","routeKey":"$default","rawPath":"/hello","headers":{"accept":"*/*","host":"example.com"},"body":"hi"}`)
	payload := []byte(`{"statusCode":200,"body":"hello, world"}`)
	servers := []struct {
		name  string
		serve func(b *testing.B, h interface {
			rapiHandler
			http.Handler
		}) net.Conn
	}{
		{"lean", func(b *testing.B, h interface {
			rapiHandler
			http.Handler
		}) net.Conn {
			client, server := loopbackPair(b)
			srv := newRAPIServer(h, slog.New(slog.DiscardHandler))
			serveOne(b, server, func(q *connQueue) { srv.serve(q) }, func() { srv.Close() })
			return client
		}},
		{"net-http", func(b *testing.B, h interface {
			rapiHandler
			http.Handler
		}) net.Conn {
			client, server := loopbackPair(b)
			hs := newNetHTTP(h)
			serveOne(b, server, func(q *connQueue) { hs.Serve(q) }, func() { hs.Close() })
			return client
		}},
	}
	// A next answered at once, and one that waited (and watched); net/http
	// reads in the background for each request, whatever its handler.
	for _, r := range []struct {
		name string
		srv  int
		wait bool
	}{{"lean", 0, false}, {"lean-waited", 0, true}, {"net-http", 1, false}} {
		b.Run("routes/"+r.name, func(b *testing.B) {
			rt := newBenchRuntime(servers[r.srv].serve(b, &benchRoutes{event: event, wait: r.wait}), payload)
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				if err := rt.roundTrip(rt.next, http.StatusOK); err != nil {
					b.Fatal(err)
				}
				if err := rt.roundTrip(rt.response, http.StatusAccepted); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}
	// The same requests pipelined, a batch at a time: no wake-up waits
	// for each, and what is left is each request's work.
	const batch = 64
	for _, srv := range servers {
		b.Run("routes-pipelined/"+srv.name, func(b *testing.B) {
			rt := newBenchRuntime(srv.serve(b, &benchRoutes{event: event}), payload)
			var reqs []byte
			for range batch {
				reqs = append(append(reqs, rt.next...), rt.response...)
			}
			b.ReportAllocs()
			cpu := startCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				go rt.c.Write(reqs[:n*(len(rt.next)+len(rt.response))])
				for range n {
					if err := rt.read(http.StatusOK); err != nil {
						b.Fatal(err)
					}
					if err := rt.read(http.StatusAccepted); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			cpu.report(b)
		})
	}
	for _, netHTTP := range []bool{false, true} {
		name := "session/lean"
		if netHTTP {
			name = "session/net-http"
		}
		b.Run(name, func(b *testing.B) {
			s := newRawSession(b, netHTTP)
			rt := newBenchRuntime(s.conn(), payload)
			// The runner's side: one invocation after the other.
			invocations := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range invocations {
					if _, err := s.Do(context.Background(), benchID, event, time.Minute, noStart); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				invocations <- struct{}{}
				if err := rt.roundTrip(rt.next, http.StatusOK); err != nil {
					b.Fatal(err)
				}
				if err := rt.roundTrip(rt.response, http.StatusAccepted); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
			close(invocations)
			wg.Wait()
		})
	}
}
