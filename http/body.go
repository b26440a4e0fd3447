package http

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/minilambda/minilambda/function"
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
	n, limit := r.ContentLength, s.bodyLimit(r)
	if n < 0 || n > limit {
		n = limit
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

// A bodyMeter counts the body of a request whose credentials are not
// checked yet against the memory budget as it arrives, not as declared:
// a stranger who declares 6 MiB and trickles holds only what it sent.
// Such bodies hold at most Options.StrangerBytes together, so strangers
// cannot take the budget from clients with the token.
type bodyMeter struct {
	s        *Server
	held     int64
	stranger bool // counted in s.strangers too
}

type meterKey struct{}

// meterStep is the first buffer a metered body gets; it doubles from
// there to the declared length.
const meterStep = 64 << 10

// take reserves n more bytes.
func (m *bodyMeter) take(n int64) error {
	if m.stranger {
		if held := m.s.strangers.Add(n); held > m.s.opts.StrangerBytes && held > n {
			m.s.strangers.Add(-n)
			return fmt.Errorf("%w: requests not yet authenticated hold their whole share (%d MiB) of the memory budget; try again shortly",
				function.ErrBusy, m.s.opts.StrangerBytes>>20)
		}
	}
	if m.s.opts.Budget != nil {
		if err := m.s.opts.Budget.Reserve(n); err != nil {
			if m.stranger {
				m.s.strangers.Add(-n)
			}
			return err
		}
	}
	m.held += n
	return nil
}

// trust moves what the body holds out of the strangers' share.
func (m *bodyMeter) trust() {
	if m.stranger {
		m.s.strangers.Add(-m.held)
		m.stranger = false
	}
}

// release gives back all the body held.
func (m *bodyMeter) release() {
	if m.s.opts.Budget != nil && m.held > 0 {
		m.s.opts.Budget.Release(m.held)
	}
	m.trust()
	m.held = 0
}

// read reads r into a buffer that grows as bytes come, doubling up to the
// declared length, each size reserved before it is made.
func (m *bodyMeter) read(r io.Reader, length, limit int64) ([]byte, error) {
	known := length >= 0 && length <= limit
	if known && length == 0 {
		return nil, nil
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			next := max(meterStep, 2*int64(cap(buf)))
			if known {
				next = min(next, length)
			} else {
				next = min(next, limit+1) // one past: MaxBytesReader's error
			}
			if err := m.take(next - int64(cap(buf))); err != nil {
				return nil, err
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case known && int64(len(buf)) == length:
			return buf, nil
		case err == io.EOF:
			if known {
				return nil, io.ErrUnexpectedEOF
			}
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}

// heldBody is a body its handler has read and checked: later reads take
// the same bytes instead of a copy.
type heldBody struct {
	*bytes.Reader
	data []byte
}

func (*heldBody) Close() error { return nil }

// hold gives r the body its handler has read.
func hold(r *http.Request, data []byte) {
	r.Body = &heldBody{Reader: bytes.NewReader(data), data: data}
	r.ContentLength = int64(len(data))
}
