package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The Runtime API's own HTTP/1.1 server (rapiServer): the runtime's
// connections come from the container's init, each one trusted as the
// container's own, and carry only the API's few requests, so the server
// reads of a request only what the API and HTTP/1.1's framing need, into
// buffers its connection keeps: no header map, no Request, no context, and
// no goroutine a request but the one that watches for the runtime's
// hang-up while a next waits. It writes each response, head and body, in
// one write.
//
// On the wire it answers as the net/http server that it replaces did:
// keep-alive (and HTTP/1.0's), Connection: close, bodies by Content-Length
// or chunked, Expect: 100-continue, a 400 for a malformed request, 431 for a
// head over the bound, 501 for a transfer coding other than chunked, 505 for
// a version other than 1.x, 417 for an expectation other than
// 100-continue, a Date on every response, the body its handler leaves
// unread discarded (up to 256 KiB) to keep the connection, and net/http's
// timeouts: a request's head must come within rapiHeaderTimeout of its
// first byte (of the connection's start for the first request), and
// neither a body nor the wait between requests has a bound.

// The server's bounds: net/http's, as the session's http.Server had them.
const (
	rapiHeaderTimeout = 10 * time.Second
	// rapiMaxHead bounds a request's line and header fields: net/http's
	// MaxHeaderBytes of 64 KiB and the 4 KiB it lets through besides.
	rapiMaxHead = 64<<10 + 4096
	// rapiMaxDiscard is the most of a body its handler left unread that
	// is read to keep the connection; past it, the connection closes.
	rapiMaxDiscard = 256 << 10
	// rapiLinger is how long a connection closed with its runtime's input
	// unread is drained first, so that the runtime reads the answer rather
	// than a reset.
	rapiLinger = 500 * time.Millisecond
)

const (
	rapiReadBuffer = 4096 // as net/http's: it bounds a chunk's line and a trailer
	// rapiWritev: a body at least this long is written where it is, after
	// the head, in one writev, rather than copied.
	rapiWritev = 16 << 10
	// rapiKeepBuffer: a connection's buffer grown past it is dropped once
	// its request is done.
	rapiKeepBuffer = 64 << 10
)

// rapiHandler serves the requests of a rapiServer.
type rapiHandler interface {
	serveRAPI(w *rapiResponse, r *rapiRequest)
}

// rapiPeer is the connection a request came on, as its handler sees it.
type rapiPeer interface {
	// send writes w now, rather than when the handler returns.
	send(w *rapiResponse) error
	// watch makes the request's context end when the runtime hangs up,
	// from now until the response is sent: the handler reads no more of
	// its body.
	watch()
}

// rapiRequest is one request, as much of it as the handlers read. Its
// slices are valid until the handler returns.
type rapiRequest struct {
	// ctx ends when the runtime hangs up, once the handler watches for
	// it, or when the server closes the connection.
	ctx    context.Context
	method string
	path   []byte // decoded, as url.URL's Path
	// errType is Lambda-Runtime-Function-Error-Type's first value.
	errType string
	// contentLength is the body's length: -1 when it is chunked.
	contentLength int64
	body          io.Reader
	peer          rapiPeer
}

// watch makes r.ctx end when the runtime hangs up while the handler
// waits.
func (r *rapiRequest) watch() { r.peer.watch() }

// readBody reads the body, up to limit bytes, as io.ReadAll of an
// io.LimitReader would: a body cut short is an error.
func (r *rapiRequest) readBody(limit int64) ([]byte, error) {
	if r.contentLength == 0 {
		return []byte{}, nil
	}
	if r.contentLength > 0 {
		b := make([]byte, min(r.contentLength, limit))
		n, err := io.ReadFull(r.body, b)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b[:n], err
	}
	b := make([]byte, 0, 512)
	for int64(len(b)) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.body.Read(b[len(b):min(int64(cap(b)), limit)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// rapiResponse is the response to one request: its handler sets the
// status, the header fields, each once and in the order net/http would
// write them (by name), and the body; the server adds Date,
// Content-Length and Connection, and writes it all at once when the
// handler returns, or sends.
type rapiResponse struct {
	status int
	head   []byte // the handler's fields, "Name: value\r\n" each
	// hasLength says the handler set Content-Length itself; conn is the
	// Connection field it set, which is head[connAt:connEnd].
	hasLength       bool
	conn            string
	connAt, connEnd int
	body            []byte
	own             []byte // what Write appends to, kept between requests
	sent            bool
	err             error // send's
	peer            rapiPeer
}

var errRAPISent = errors.New("agent: the response was sent already")

// header sets a field.
func (w *rapiResponse) header(name, value string) {
	at := len(w.head)
	w.head = append(w.head, name...)
	w.head = append(w.head, ": "...)
	w.head = appendFieldValue(w.head, value)
	w.head = append(w.head, "\r\n"...)
	switch name {
	case "Content-Length":
		w.hasLength = true
	case "Connection":
		w.conn, w.connAt, w.connEnd = value, at, len(w.head)
	}
}

// headerInt sets a field whose value is n.
func (w *rapiResponse) headerInt(name string, n int64) {
	if name == "Content-Length" {
		w.hasLength = true
	}
	w.head = append(w.head, name...)
	w.head = append(w.head, ": "...)
	w.head = strconv.AppendInt(w.head, n, 10)
	w.head = append(w.head, "\r\n"...)
}

// appendFieldValue appends v as net/http writes a field's value: its line
// breaks made spaces, and trimmed.
func appendFieldValue(b []byte, v string) []byte {
	for len(v) > 0 && isASCIISpace(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isASCIISpace(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return b
}

func isASCIISpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// writeHeader sets the status: the first one set holds.
func (w *rapiResponse) writeHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

// setBody makes b the body, without copying it.
func (w *rapiResponse) setBody(b []byte) {
	w.body = b[:len(b):len(b)]
}

// Write appends p to the body.
func (w *rapiResponse) Write(p []byte) (int, error) {
	if w.sent {
		return 0, errRAPISent
	}
	w.own = append(w.own, p...)
	w.body = w.own
	return len(p), nil
}

// WriteString appends s to the body.
func (w *rapiResponse) WriteString(s string) (int, error) {
	if w.sent {
		return 0, errRAPISent
	}
	w.own = append(w.own, s...)
	w.body = w.own
	return len(s), nil
}

// send writes the response now: its error says the runtime did not get
// it.
func (w *rapiResponse) send() error { return w.peer.send(w) }

func (w *rapiResponse) reset() {
	head, own := w.head[:0], w.own[:0]
	if cap(head) > rapiKeepBuffer {
		head = nil
	}
	if cap(own) > rapiKeepBuffer {
		own = nil
	}
	*w = rapiResponse{head: head, own: own, peer: w.peer}
}

// rapiServer serves the Runtime API on the connections it is given.
type rapiServer struct {
	h             rapiHandler
	logger        *slog.Logger
	headerTimeout time.Duration

	mu     sync.Mutex
	conns  map[*rapiConn]struct{}
	closed bool
}

// newRAPIServer returns a server of h's, which logs to logger what its
// handler did not handle: a panic.
func newRAPIServer(h rapiHandler, logger *slog.Logger) *rapiServer {
	return &rapiServer{h: h, logger: logger, headerTimeout: rapiHeaderTimeout, conns: map[*rapiConn]struct{}{}}
}

// serve serves each connection ln accepts, each in a goroutine of its own,
// until an accept fails (a connQueue's fail only once it is closed).
func (s *rapiServer) serve(ln interface{ Accept() (net.Conn, error) }) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := newRAPIConn(s, nc)
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.conns[c] = struct{}{}
		}
		s.mu.Unlock()
		if closed {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// Close closes every connection, and any accepted later: a handler that
// waits sees its request's context end. Closing the listener is its
// owner's.
func (s *rapiServer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.nc.Close()
	}
}

// rapiHangup is a connection's context: done once the runtime has hung
// up or the server has closed the connection.
type rapiHangup struct {
	done chan struct{}
	once sync.Once
}

func (h *rapiHangup) Deadline() (time.Time, bool) { return time.Time{}, false }
func (h *rapiHangup) Done() <-chan struct{}       { return h.done }
func (h *rapiHangup) Value(any) any               { return nil }

func (h *rapiHangup) Err() error {
	select {
	case <-h.done:
		return context.Canceled
	default:
		return nil
	}
}

func (h *rapiHangup) cancel() { h.once.Do(func() { close(h.done) }) }

// rapiConn is one of the runtime's connections.
type rapiConn struct {
	srv *rapiServer
	nc  net.Conn // as accepted: closing it gives its place back
	rw  net.Conn // nc unwrapped, what is read and written
	br  *bufio.Reader
	ctx rapiHangup

	req  rapiRequest
	resp rapiResponse
	body rapiBody
	hd   rapiHead

	path    []byte // the request's path
	field   []byte // the value of the field being read, when it is one the server reads
	clFirst []byte // the first Content-Length's value
	long    []byte // a line longer than br's buffer
	trash   []byte // what a discarded body is read into
	out     []byte // the response's head, and its body when short
	bufs    [2][]byte
	wv      net.Buffers
	dateSec int64
	date    []byte

	lastPOST bool
	closing  bool // the connection closes after the response
	// watching says a read in the background (watch) notices the
	// runtime's hang-up; aborted tells it that it was stopped, and it
	// says on watched that it is done.
	watching bool
	aborted  atomic.Bool
	watched  chan struct{}
	watchFn  func() // watchHangup, made once: a go statement of a method allocates
}

// rapiHead is what the server reads of a request's head.
type rapiHead struct {
	n              int // bytes read
	major, minor   int
	star           bool // the target is "*"
	hosts          int
	hostOK         bool
	cls            int
	clConflict     bool
	tes            int
	teChunked      bool
	conns          int
	firstClose     bool // the first Connection value has the token close
	firstKeepAlive bool
	anyClose       bool // some Connection value lists close
	anyKeepAlive   bool
	expects        int
	expectSet      bool // the first Expect value is not empty
	expect100      bool
	errTypes       int
	badTrailer     bool
	badName        bool // a field's name has a space
}

// newRAPIConn makes a connection of s's ready to serve: its buffers come
// with the connection, once.
func newRAPIConn(s *rapiServer, nc net.Conn) *rapiConn {
	rw := nc
	if cc, ok := nc.(*countedConn); ok {
		rw = cc.Conn
	}
	c := &rapiConn{srv: s, nc: nc, rw: rw, br: bufio.NewReaderSize(rw, rapiReadBuffer),
		ctx: rapiHangup{done: make(chan struct{})}, watched: make(chan struct{}, 1)}
	c.resp.peer = c
	c.watchFn = c.watchHangup
	c.req = rapiRequest{ctx: &c.ctx, body: &c.body, peer: c}
	c.body.c = c
	return c
}

// A head that cannot be read is answered as net/http answers it, and the
// connection closes: rapiSilent answers nothing, as for a runtime that hung
// up or stalled.
var (
	rapiSilent      = &rapiFailure{}
	rapiBadRequest  = &rapiFailure{reply: "HTTP/1.1 400 Bad Request" + rapiFailureFields + "400 Bad Request"}
	rapiTooLarge    = &rapiFailure{reply: "HTTP/1.1 431 Request Header Fields Too Large" + rapiFailureFields + "431 Request Header Fields Too Large"}
	rapiUnsupported = &rapiFailure{reply: "HTTP/1.1 501 Not Implemented" + rapiFailureFields + "Unsupported transfer encoding"}
)

const rapiFailureFields = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// rapiFailure is the answer to a request whose head could not be read.
type rapiFailure struct{ reply string }

// rapiStatusFailure is net/http's answer to a statusError.
func rapiStatusFailure(code int, text string) *rapiFailure {
	s := fmt.Sprintf("%d %s: %s", code, http.StatusText(code), text)
	return &rapiFailure{reply: "HTTP/1.1 " + s + rapiFailureFields + s}
}

var (
	rapiNoHost      = rapiStatusFailure(http.StatusBadRequest, "missing required Host header")
	rapiBadHost     = rapiStatusFailure(http.StatusBadRequest, "malformed Host header")
	rapiBadName     = rapiStatusFailure(http.StatusBadRequest, "invalid header name")
	rapiBadVersion  = rapiStatusFailure(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
	rapiContinue    = []byte("HTTP/1.1 100 Continue\r\n\r\n")
	rapiLongTimeAgo = time.Unix(1, 0)
)

// serve serves the connection's requests until it closes.
func (c *rapiConn) serve() {
	defer func() {
		c.ctx.cancel()
		c.nc.Close()
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	}()
	timed := true
	c.rw.SetReadDeadline(time.Now().Add(c.srv.headerTimeout))
	for {
		if f := c.readHead(); f != nil {
			if f != rapiSilent {
				c.rw.Write(append(c.out[:0], f.reply...))
				c.linger()
			}
			return
		}
		if timed {
			c.rw.SetReadDeadline(time.Time{})
		}
		if !c.handle() {
			return
		}
		if c.closing {
			if c.req.contentLength != 0 && !c.body.sawEOF {
				c.linger()
			}
			return
		}
		c.reset()
		// The next request's time begins with its first bytes, not
		// before; a head that came whole is read with no deadline.
		if _, err := c.br.Peek(4); err != nil {
			return
		}
		buf, _ := c.br.Peek(c.br.Buffered())
		if timed = !headBuffered(buf); timed {
			c.rw.SetReadDeadline(time.Now().Add(c.srv.headerTimeout))
		}
	}
}

// headBuffered says whether b holds a request's whole head: a line, and an
// empty one after it.
func headBuffered(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		b = b[i+1:]
		if len(b) > 0 && b[0] == '\n' || len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
			return true
		}
	}
}

// handle serves the request whose head was read: false when the
// connection is done.
func (c *rapiConn) handle() (ok bool) {
	h := &c.hd
	if h.expect100 {
		if h.major == 1 && h.minor >= 1 && c.req.contentLength != 0 {
			c.body.expect, c.body.expectAsked = true, true
		}
	} else if h.expectSet {
		// net/http's answer to an expectation it cannot meet.
		c.resp.header("Connection", "close")
		c.resp.writeHeader(http.StatusExpectationFailed)
		return c.send(&c.resp) == nil
	}
	defer func() {
		if p := recover(); p != nil {
			c.srv.logger.Error("the Runtime API's handler panicked", "panic", p, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	if h.star && c.req.method == http.MethodOptions {
		// net/http's answer to OPTIONS *.
		c.resp.header("Content-Length", "0")
	} else {
		c.srv.h.serveRAPI(&c.resp, &c.req)
	}
	if c.resp.sent {
		return c.resp.err == nil
	}
	if c.resp.status == 0 && c.ctx.Err() != nil {
		// The runtime hung up while its handler waited, and the handler
		// has nothing to say.
		return false
	}
	return c.send(&c.resp) == nil
}

// reset makes the connection ready for its next request.
func (c *rapiConn) reset() {
	c.resp.reset()
	c.req = rapiRequest{ctx: &c.ctx, body: &c.body, peer: c}
	c.body = rapiBody{c: c}
	c.hd = rapiHead{}
	for _, b := range []*[]byte{&c.path, &c.field, &c.clFirst, &c.long, &c.out} {
		if cap(*b) > rapiKeepBuffer {
			*b = nil
		}
	}
}

// linger closes the connection's sending side and reads what the runtime
// still sends, for a little while, before the connection closes: closed
// with input unread, it would reset, and the runtime might lose the
// answer.
func (c *rapiConn) linger() {
	c.stopWatch()
	if cw, ok := c.rw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.rw.SetReadDeadline(time.Now().Add(rapiLinger))
	c.br.Discard(math.MaxInt)
}

// watch starts a read in the background, until the response is sent, that
// ends the request's context when the runtime hangs up, as net/http's
// does; what it reads stays in the buffer, for the next request. It waits
// for the body's end, as net/http's: before, it would only read the body.
// It costs a goroutine, which a handler spares when it does not wait.
func (c *rapiConn) watch() {
	if c.watching || c.req.contentLength != 0 && !c.body.sawEOF {
		return
	}
	c.watching = true
	go c.watchFn()
}

// watchHangup is watch's read: a hang-up ends the request's context, and
// bytes of the next request, or the stop, end the read.
func (c *rapiConn) watchHangup() {
	_, err := c.br.Peek(1)
	if err != nil && !(c.aborted.Load() && errors.Is(err, os.ErrDeadlineExceeded)) {
		c.ctx.cancel()
	}
	c.watched <- struct{}{}
}

// stopWatch stops the read of watch, and waits for it.
func (c *rapiConn) stopWatch() {
	if !c.watching {
		return
	}
	c.watching = false
	c.aborted.Store(true)
	c.rw.SetReadDeadline(rapiLongTimeAgo)
	<-c.watched
	c.aborted.Store(false)
	c.rw.SetReadDeadline(time.Time{})
}

// readHead reads a request's line and header fields, as net/http reads
// them, and checks them as it does, in its order.
func (c *rapiConn) readHead() *rapiFailure {
	h := &c.hd
	if c.lastPOST {
		// net/http's tolerance of the CRLF old clients sent after a
		// POST's body.
		peek, _ := c.br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		c.br.Discard(n)
	}
	line, err := c.line()
	if err != nil {
		if err == io.EOF {
			if h.n == 0 {
				return rapiSilent
			}
			return rapiBadRequest
		}
		return c.lineFailure(err)
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return rapiBadRequest
	}
	method, rest := line[:sp], line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return rapiBadRequest
	}
	target, proto := rest[:sp], rest[sp+1:]
	if !isToken(method) {
		return rapiBadRequest
	}
	var ok bool
	if h.major, h.minor, ok = parseHTTPVersion(proto); !ok {
		return rapiBadRequest
	}
	c.req.method = methodString(method)
	if !c.setPath(c.req.method, target) {
		return rapiBadRequest
	}
	if f := c.readFields(); f != nil {
		return f
	}
	if h.hosts > 1 {
		return rapiBadRequest
	}
	// net/http's transfer rules, which count a version of 0.0 as 1.1.
	atLeast11 := h.major > 1 || h.major == 1 && h.minor >= 1 || h.major == 0 && h.minor == 0
	chunked := false
	if h.tes > 0 && atLeast11 {
		if h.tes != 1 || !h.teChunked {
			return rapiUnsupported
		}
		chunked = true
	}
	var length int64
	if h.cls > 0 {
		if h.clConflict {
			return rapiBadRequest
		}
		cl := trimString(c.clFirst)
		if len(cl) == 0 {
			return rapiBadRequest
		}
		n, err := parseDecimal(cl)
		if err != nil {
			return rapiBadRequest
		}
		length = n
	}
	if chunked {
		length = -1
		if h.badTrailer {
			return rapiBadRequest
		}
	}
	if h.major != 1 {
		return rapiBadVersion
	}
	if h.major == 1 && h.minor >= 1 && h.hosts == 0 && c.req.method != "CONNECT" {
		return rapiNoHost
	}
	if h.hosts == 1 && !h.hostOK {
		return rapiBadHost
	}
	if h.badName {
		return rapiBadName
	}
	c.lastPOST = c.req.method == http.MethodPost
	c.req.path, c.req.contentLength = c.path, length
	c.body.chunked, c.body.n = chunked, max(length, 0)
	c.body.sawEOF = length == 0
	return nil
}

// lineFailure is the answer to a head whose line could not be read.
func (c *rapiConn) lineFailure(err error) *rapiFailure {
	switch {
	case err == errRAPITooLarge:
		return rapiTooLarge
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return rapiBadRequest
	default:
		// A read error or a timeout: net/http answers none.
		return rapiSilent
	}
}

var errRAPITooLarge = errors.New("agent: a request's head over the bound")

// line reads the head's next line, without its line ending, valid until
// the next read; a line cut short by the end of the input is a line, as
// bufio.Reader.ReadLine gives it.
func (c *rapiConn) line() ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	c.hd.n += len(l)
	if err == bufio.ErrBufferFull {
		c.long = append(c.long[:0], l...)
		for err == bufio.ErrBufferFull && c.hd.n <= rapiMaxHead {
			l, err = c.br.ReadSlice('\n')
			c.hd.n += len(l)
			c.long = append(c.long, l...)
		}
		l = c.long
	}
	if c.hd.n > rapiMaxHead {
		return nil, errRAPITooLarge
	}
	if err != nil {
		if err == io.EOF && len(l) > 0 {
			return l, nil
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// The header fields the server reads.
const (
	fieldOther = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldExpect
	fieldErrorType
	fieldTrailer
)

func fieldKind(name []byte) int {
	var want string
	var kind int
	switch len(name) {
	case 4:
		want, kind = "host", fieldHost
	case 6:
		want, kind = "expect", fieldExpect
	case 7:
		want, kind = "trailer", fieldTrailer
	case 10:
		want, kind = "connection", fieldConnection
	case 14:
		want, kind = "content-length", fieldContentLength
	case 17:
		want, kind = "transfer-encoding", fieldTransferEncoding
	case 34:
		want, kind = "lambda-runtime-function-error-type", fieldErrorType
	default:
		return fieldOther
	}
	if !equalFold(name, want) {
		return fieldOther
	}
	return kind
}

// readFields reads the header fields, as textproto reads them (a line
// that begins with white space continues the field before), up to the
// empty line.
func (c *rapiConn) readFields() *rapiFailure {
	// The first field cannot begin with white space.
	if b, err := c.br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		return rapiBadRequest
	}
	kind := -1 // the field being read: -1, none
	for {
		line, err := c.line()
		if err != nil {
			return c.lineFailure(err)
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && kind >= 0 {
			if !validFieldValue(line) {
				return rapiBadRequest
			}
			if kind != fieldOther {
				c.field = append(c.field, ' ')
				c.field = append(c.field, trimOWS(line)...)
			}
			continue
		}
		if kind > fieldOther {
			c.endField(kind)
		}
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return rapiBadRequest
		}
		name, value := line[:colon], line[colon+1:]
		switch fieldName(name) {
		case nameBad:
			return rapiBadRequest
		case nameSpaced:
			c.hd.badName = true
			kind = fieldOther
		default:
			kind = fieldKind(name)
		}
		if !validFieldValue(value) {
			return rapiBadRequest
		}
		if kind != fieldOther {
			c.field = append(c.field[:0], trimOWS(value)...)
		}
	}
}

// endField takes the value of a field the server reads, once it is whole.
func (c *rapiConn) endField(kind int) {
	h := &c.hd
	v := c.field
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	switch kind {
	case fieldHost:
		h.hosts++
		if h.hosts == 1 {
			h.hostOK = validHost(v)
		}
	case fieldContentLength:
		h.cls++
		if h.cls == 1 {
			c.clFirst = append(c.clFirst[:0], v...)
		} else if !bytes.Equal(trimString(c.clFirst), trimString(v)) {
			h.clConflict = true
		}
	case fieldTransferEncoding:
		h.tes++
		if h.tes == 1 {
			h.teChunked = equalFold(v, "chunked")
		}
	case fieldConnection:
		h.conns++
		if h.conns == 1 {
			h.firstClose, h.firstKeepAlive = hasToken(v, "close"), hasToken(v, "keep-alive")
		}
		h.anyClose = h.anyClose || listHasToken(v, "close")
		h.anyKeepAlive = h.anyKeepAlive || listHasToken(v, "keep-alive")
	case fieldExpect:
		h.expects++
		if h.expects == 1 {
			h.expectSet, h.expect100 = len(v) > 0, hasToken(v, "100-continue")
		}
	case fieldErrorType:
		h.errTypes++
		if h.errTypes == 1 {
			c.req.errType = string(v)
		}
	case fieldTrailer:
		// The fields a trailer may not hold; net/http refuses a chunked
		// body that announces them.
		for e := range bytes.SplitSeq(v, []byte(",")) {
			e = trimString(e)
			if equalFold(e, "transfer-encoding") || equalFold(e, "trailer") || equalFold(e, "content-length") {
				h.badTrailer = true
			}
		}
	}
}

// setPath sets the request's path from its target, as url.ParseRequestURI
// decodes it; false when it is not one.
func (c *rapiConn) setPath(method string, target []byte) bool {
	if len(target) > 0 && target[0] == '/' && plainPath(target) {
		c.path = append(c.path[:0], target...)
		return true
	}
	raw := string(target)
	c.hd.star = raw == "*"
	// net/http's CONNECT: an authority, as a URL's host.
	if method == "CONNECT" && (len(raw) == 0 || raw[0] != '/') {
		raw = "http://" + raw
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return false
	}
	c.path = append(c.path[:0], u.Path...)
	return true
}

// plainPath says whether a target is a path that decodes to itself: no
// escapes, no query, no control byte, nothing past ASCII.
func plainPath(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '%' || c == '?' {
			return false
		}
	}
	return true
}

// methodString is the method as a string, with no allocation for the
// usual ones.
func methodString(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodHead:
		return http.MethodHead
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodOptions:
		return http.MethodOptions
	case http.MethodPatch:
		return http.MethodPatch
	}
	return string(m)
}

// parseHTTPVersion is net/http's ParseHTTPVersion.
func parseHTTPVersion(v []byte) (major, minor int, ok bool) {
	switch string(v) {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	if len(v) != len("HTTP/X.Y") || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseDecimal is net/http's reading of a Content-Length: digits only,
// below 1<<63.
func parseDecimal(b []byte) (int64, error) {
	var n int64
	for _, c := range b {
		if !isDigit(c) || n > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, errors.New("bad Content-Length")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// The kinds of a field's name.
const (
	nameOK = iota
	nameSpaced
	nameBad
)

// fieldName checks a field's name as textproto and net/http do: a token,
// which textproto takes with spaces too, and net/http then refuses.
func fieldName(b []byte) int {
	if len(b) == 0 {
		return nameBad
	}
	kind := nameOK
	for _, c := range b {
		switch {
		case isTokenByte(c):
		case c == ' ':
			kind = nameSpaced
		default:
			return nameBad
		}
	}
	return kind
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenByte(c) {
			return false
		}
	}
	return true
}

// isTokenByte says whether c may be in a token (RFC 9110).
func isTokenByte(c byte) bool {
	const mask = 0 |
		(1<<10-1)<<'0' |
		(1<<26-1)<<'a' |
		(1<<26-1)<<'A' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' |
		1<<'+' | 1<<'-' | 1<<'.' | 1<<'^' | 1<<'_' | 1<<'`' | 1<<'|' | 1<<'~'
	return ((uint64(1)<<c)&(mask&(1<<64-1)) |
		(uint64(1)<<(c-64))&(mask>>64)) != 0
}

// validFieldValue says whether b may be in a field's value: no control
// byte but the tab.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost is httpguts.ValidHostHeader.
func validHost(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimString is textproto.TrimString.
func trimString(b []byte) []byte {
	for len(b) > 0 && isASCIISpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isASCIISpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func equalFold[T string | []byte](b T, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasToken is net/http's check of a header value for a token, which it
// makes on the first value of Connection and Expect.
func hasToken[T string | []byte](v T, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if equalFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// listHasToken is httpguts.HeaderValuesContainsToken for one value: a
// comma-separated list with token in it, in any case.
func listHasToken(v []byte, token string) bool {
	for e := range bytes.SplitSeq(v, []byte(",")) {
		if e = trimOWS(e); equalFold(e, token) {
			return true
		}
	}
	return false
}

// send writes the response, deciding first, as net/http does when it
// writes a response's head, whether the connection outlives it: a request
// that asks to close it, an HTTP/1.0 request that does not ask to keep it,
// a handler that set Connection: close, or a body left unread that cannot
// be read to its end closes it.
func (c *rapiConn) send(w *rapiResponse) error {
	if w.sent {
		return w.err
	}
	w.sent = true
	// Once the head is written, a read of the body sends no 100 Continue.
	c.body.expect = false
	h := &c.hd
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	isHEAD := c.req.method == http.MethodHead
	proto11 := h.major == 1 && h.minor >= 1
	// net/http gives a body written whole its length, which for HEAD, whose
	// body it drops, it cannot tell from none when it is 0.
	autoLength := !w.hasLength && (!isHEAD || len(w.body) > 0)
	keepAlive10 := h.major == 1 && h.minor == 0 && h.firstKeepAlive
	wantsClose := h.anyClose || h.major == 1 && h.minor == 0 && !h.anyKeepAlive || h.firstClose
	conn := ""
	closeAfter, excludeConn := false, false
	if keepAlive10 && (isHEAD || w.hasLength || autoLength) {
		if w.conn == "" {
			conn = "keep-alive"
		}
	} else if !proto11 || wantsClose {
		closeAfter = true
	}
	if w.conn == "close" {
		closeAfter = true
	}
	if c.body.expectAsked && !c.body.sawEOF {
		// The runtime may not have sent what its handler left unread.
		closeAfter = true
	}
	if c.req.contentLength != 0 && !closeAfter && !c.body.expectAsked {
		tooBig := false
		switch {
		case c.body.err != nil:
			closeAfter = true
		case c.body.sawEOF:
		case !c.body.chunked && c.body.n >= rapiMaxDiscard:
			tooBig = true
		default:
			switch err := c.body.discard(rapiMaxDiscard + 1); err {
			case nil:
				tooBig = true
			case io.EOF:
			default:
				closeAfter = true
			}
		}
		if tooBig {
			closeAfter, excludeConn, conn = true, true, "close"
		}
	}
	// net/http writes its own Connection field in place of the handler's,
	// unless the handler's says close.
	if closeAfter && (excludeConn || !hasToken(w.conn, "close")) {
		excludeConn = true
		if proto11 {
			conn = "close"
		}
	}
	c.closing = closeAfter

	out := c.out[:0]
	if proto11 {
		out = append(out, "HTTP/1.1 "...)
	} else {
		out = append(out, "HTTP/1.0 "...)
	}
	if text := http.StatusText(status); text != "" {
		out = strconv.AppendInt(out, int64(status), 10)
		out = append(out, ' ')
		out = append(out, text...)
		out = append(out, "\r\n"...)
	} else {
		out = fmt.Appendf(out, "%03d status code %d\r\n", status, status)
	}
	if excludeConn && w.connEnd > w.connAt {
		out = append(out, w.head[:w.connAt]...)
		out = append(out, w.head[w.connEnd:]...)
	} else {
		out = append(out, w.head...)
	}
	out = append(out, "Date: "...)
	out = append(out, c.dateField()...)
	out = append(out, "\r\n"...)
	if autoLength {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(w.body)), 10)
		out = append(out, "\r\n"...)
	}
	if conn != "" {
		out = append(out, "Connection: "...)
		out = append(out, conn...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	body := w.body
	if isHEAD {
		body = nil
	}
	var err error
	if len(body) < rapiWritev {
		out = append(out, body...)
		_, err = c.rw.Write(out)
	} else {
		c.bufs = [2][]byte{out, body}
		c.wv = c.bufs[:]
		_, err = c.wv.WriteTo(c.rw)
		c.bufs, c.wv = [2][]byte{}, nil
	}
	c.out = out
	if err != nil {
		w.err, c.closing = err, true
	}
	// The handler has no more to wait for.
	c.stopWatch()
	return err
}

// dateField is the Date field's value, made once a second.
func (c *rapiConn) dateField() []byte {
	now := time.Now()
	if s := now.Unix(); s != c.dateSec || c.date == nil {
		c.dateSec = s
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}

// rapiBody reads a request's body, by its Content-Length or chunked, as
// net/http reads one.
type rapiBody struct {
	c       *rapiConn
	chunked bool
	n       int64 // by length: the bytes left; chunked: the bytes left of the chunk
	sawEOF  bool
	err     error // the first error but io.EOF, which every later read gives
	// expect says the runtime waits for 100 Continue before it sends the
	// body; expectAsked, that it asked for one.
	expect, expectAsked bool
	checkEnd            bool  // the chunk's CRLF is to be read
	excess              int64 // chunked encoding's overhead, which is bounded
}

func (b *rapiBody) Read(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.expect {
		b.expect = false
		b.c.rw.Write(rapiContinue)
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
		if err == io.EOF {
			if terr := b.trailer(); terr != nil {
				err = terr
			}
		}
	} else {
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err = b.c.br.Read(p)
		b.n -= int64(n)
		switch {
		case b.n == 0:
			err = io.EOF
		case err == io.EOF:
			// As net/http's: the body is over, though short.
			b.sawEOF = true
			return n, io.ErrUnexpectedEOF
		}
	}
	switch err {
	case nil:
	case io.EOF:
		b.sawEOF = true
	default:
		b.err = err
	}
	return n, err
}

// discard reads up to limit bytes of the body: nil when it read them all,
// io.EOF when the body ended first.
func (b *rapiBody) discard(limit int64) error {
	if b.c.trash == nil {
		b.c.trash = make([]byte, rapiReadBuffer)
	}
	for limit > 0 {
		n, err := b.Read(b.c.trash[:min(int64(len(b.c.trash)), limit)])
		limit -= int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// readChunked is net/http's chunked reader: it reads what it has without
// blocking for a next chunk's line once it has some, and gives io.EOF at
// the last chunk, before the trailer.
func (b *rapiBody) readChunked(p []byte) (n int, err error) {
	br := b.c.br
	for err == nil {
		if b.checkEnd {
			if n > 0 && br.Buffered() < 2 {
				break
			}
			var crlf []byte
			if crlf, err = br.Peek(2); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				break
			}
			if crlf[0] != '\r' || crlf[1] != '\n' {
				err = errors.New("malformed chunked encoding")
				break
			}
			br.Discard(2)
			b.checkEnd = false
		}
		if b.n == 0 {
			if n > 0 && !b.chunkLineBuffered() {
				break
			}
			err = b.beginChunk()
			continue
		}
		if len(p) == 0 {
			break
		}
		rbuf := p
		if int64(len(rbuf)) > b.n {
			rbuf = rbuf[:b.n]
		}
		var n0 int
		n0, err = br.Read(rbuf)
		n += n0
		p = p[n0:]
		b.n -= int64(n0)
		if b.n == 0 && err == nil {
			b.checkEnd = true
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

func (b *rapiBody) chunkLineBuffered() bool {
	n := b.c.br.Buffered()
	if n == 0 {
		return false
	}
	peek, _ := b.c.br.Peek(n)
	return bytes.IndexByte(peek, '\n') >= 0
}

// beginChunk reads a chunk's line: its size, and extensions, which are
// dropped; io.EOF at the last chunk.
func (b *rapiBody) beginChunk() error {
	line, err := b.c.br.ReadSlice('\n')
	switch err {
	case nil:
	case io.EOF:
		return io.ErrUnexpectedEOF
	case bufio.ErrBufferFull:
		return errRAPILineTooLong
	default:
		return err
	}
	// No bare LF, no CR but the line's end (RFC 9112).
	if i := bytes.IndexByte(line, '\r'); i == -1 {
		return errors.New("chunked line ends with bare LF")
	} else if i != len(line)-2 {
		return errors.New("invalid CR in chunked line")
	}
	line = line[:len(line)-2]
	if len(line) >= rapiReadBuffer {
		return errRAPILineTooLong
	}
	b.excess += int64(len(line)) + 2
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	size, err := parseHexUint(line)
	if err != nil {
		return err
	}
	// As net/http: 16 bytes of overhead a chunk, and twice its data, and
	// no more than 16 KiB past that.
	b.excess -= 16 + 2*int64(size)
	b.excess = max(b.excess, 0)
	if b.excess > 16<<10 {
		return errors.New("chunked encoding contains too much non-data")
	}
	// A chunk past 1<<63 bytes is one that never ends.
	b.n = int64(min(size, math.MaxInt64))
	if size == 0 {
		return io.EOF
	}
	return nil
}

var errRAPILineTooLong = errors.New("header line too long")

// parseHexUint is net/http's reading of a chunk's size.
func parseHexUint(v []byte) (n uint64, err error) {
	if len(v) == 0 {
		return 0, errors.New("empty hex number for chunk length")
	}
	for i, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b = b - '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, errors.New("invalid byte in chunk length")
		}
		if i == 16 {
			return 0, errors.New("http chunk length too large")
		}
		n <<= 4
		n |= uint64(b)
	}
	return n, nil
}

// trailer reads a chunked body's trailer, whose fields are dropped: as
// net/http's, it must be within the read buffer.
func (b *rapiBody) trailer() error {
	br := b.c.br
	buf, err := br.Peek(2)
	if len(buf) == 2 && buf[0] == '\r' && buf[1] == '\n' {
		br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errors.New("http: unexpected EOF reading trailer")
	}
	if err != nil {
		return err
	}
	// As net/http: a "\r\n\r\n" must come within the read buffer, or
	// the trailer is refused; then textproto reads it to its first empty
	// line, which may come sooner, since it takes a bare "\n" for a line
	// end (a "\r" before it dropped). What follows is the next request's.
	crlf2 := -1
	for size := 4; crlf2 < 0; size++ {
		buf, err := br.Peek(size)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			crlf2 = size
		} else if err != nil {
			return errors.New("http: suspiciously long trailer after chunked body")
		}
	}
	buf, _ = br.Peek(crlf2)
	end := crlf2
	for i := range buf {
		if buf[i] == '\n' && (i == 0 || buf[i-1] == '\n' || buf[i-1] == '\r' && (i == 1 || buf[i-2] == '\n')) {
			end = i + 1
			break
		}
	}
	buf, _ = br.Peek(end)
	defer br.Discard(end)
	// The errors quote what textproto's quote, so a runtime that sends a
	// bad trailer reads the words it would from net/http.
	line, buf := cutLine(buf)
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		if len(line) > 80 {
			return errors.New("message too large")
		}
		return fmt.Errorf("malformed MIME header initial line: %q", line)
	}
	for len(line) > 0 {
		if bytes.IndexByte(line, ':') < 0 {
			return fmt.Errorf("malformed MIME header: missing colon: %q", line)
		}
		// A field folded over several lines is one line, each part
		// trimmed and joined by a space.
		kv := append([]byte(nil), trimBlanks(line)...)
		line, buf = cutLine(buf)
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			kv = append(append(kv, ' '), trimBlanks(line)...)
			line, buf = cutLine(buf)
		}
		colon := bytes.IndexByte(kv, ':')
		switch name := fieldName(kv[:colon]); {
		case name == nameBad:
			return fmt.Errorf("malformed MIME header line: %q", kv)
		case !validFieldValue(kv[colon+1:]):
			// textproto canonicalizes a name without spaces in place,
			// before it checks the value, and quotes the line after.
			if name == nameOK {
				copy(kv, textproto.CanonicalMIMEHeaderKey(string(kv[:colon])))
			}
			return fmt.Errorf("malformed MIME header line: %q", kv)
		}
	}
	return nil
}

// cutLine returns buf's first line without its line end, and the rest.
func cutLine(buf []byte) (line, rest []byte) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return buf, nil
	}
	line, rest = buf[:i], buf[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// trimBlanks is b without the spaces and tabs at either end.
func trimBlanks(b []byte) []byte {
	return bytes.Trim(b, " \t")
}
