package http

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// paceBody makes the body of r arrive at Options.MinBodyRate or fail: the
// connection's read deadline stays one BodyWindow ahead for as long as
// each window brings a window's worth of bytes, and is lifted once the
// body has been read. A fixed total would cut a large upload on a slow
// but honest link; a rate cuts only clients that trickle.
func (s *Server) paceBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.opts.BodyWindow)) != nil {
		return // not a connection this server can pace
	}
	quota := max(1, s.opts.MinBodyRate*int64(s.opts.BodyWindow)/int64(time.Second))
	r.Body = &pacedBody{ReadCloser: r.Body, rc: rc, window: s.opts.BodyWindow, quota: quota}
}

type pacedBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	quota  int64 // bytes each window must bring
	got    int64 // bytes since the deadline last moved
}

func (b *pacedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errTooSlow{err}
	}
	b.got += int64(n)
	switch {
	case err == io.EOF:
		// The pace is the body's, not the handler's: lift it. (net/http
		// lifts it too when it starts watching for the client to leave.)
		b.rc.SetReadDeadline(time.Time{})
	case b.got >= b.quota:
		b.got = 0
		b.rc.SetReadDeadline(time.Now().Add(b.window))
	}
	return n, err
}

// reserveBody counts the body of r against the memory budget, before it
// is read: its declared length, or the most a body may be when it declares
// none. Uploads are spooled to disk and do not count.
func (s *Server) reserveBody(r *http.Request) (release func(), err error) {
	// Only the routes that read a JSON body: POST and PUT, which need the
	// token when one is set, so a stranger cannot hold the budget.
	if s.opts.Budget == nil || r.Method != http.MethodPost && r.Method != http.MethodPut || r.URL.Path == "/images" {
		return func() {}, nil
	}
	n := r.ContentLength
	if n < 0 || n > s.opts.MaxBodyBytes {
		n = s.opts.MaxBodyBytes
	}
	if err := s.opts.Budget.Reserve(n); err != nil {
		return nil, err
	}
	return func() { s.opts.Budget.Release(n) }, nil
}

// errTooSlow is a body read cut by the pace's deadline.
type errTooSlow struct{ err error }

func (e errTooSlow) Error() string { return e.err.Error() }
func (e errTooSlow) Unwrap() error { return e.err }
