package agent

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// TestStreamConnDeadlines: a read deadline that passes interrupts the read
// and nothing else. The stream lives on, and the bytes of the interrupted
// read reach the next Read, as on a TCP connection; HTTP/2's own deadline
// would have reset the stream.
func TestStreamConnDeadlines(t *testing.T) {
	send, br, errs := overStream(t, func(c *streamConn) error {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("a read past its deadline: " + errString(err))
		}
		// A deadline in the past, as the Runtime API's server sets to stop
		// a read it no longer needs.
		c.SetReadDeadline(time.Unix(1, 0))
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("a read with a deadline in the past: " + errString(err))
		}
		c.SetReadDeadline(time.Time{})
		if _, err := c.Write([]byte("ready\n")); err != nil {
			return err
		}
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "abc" {
			return errors.New("after the deadlines: " + string(b) + " " + errString(err))
		}
		_, err := c.Write([]byte("done\n"))
		return err
	})
	if line, err := br.ReadString('\n'); line != "ready\n" {
		t.Fatalf("%q %v; the handler: %v", line, err, <-errs)
	}
	send.Write([]byte("abc"))
	if line, err := br.ReadString('\n'); line != "done\n" {
		t.Fatalf("%q %v; the handler: %v", line, err, <-errs)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestStreamConnWriteDeadlineIdle: a write deadline that passes while the
// stream is idle breaks nothing: HTTP/2's own would have reset the stream.
func TestStreamConnWriteDeadlineIdle(t *testing.T) {
	_, br, errs := overStream(t, func(c *streamConn) error {
		// Room for a slow machine's write, then idle past it.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("one\n")); err != nil {
			return err
		}
		time.Sleep(1300 * time.Millisecond)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := c.Write([]byte("two\n"))
		return err
	})
	for _, want := range []string{"one\n", "two\n"} {
		if line, err := br.ReadString('\n'); line != want {
			t.Fatalf("%q %v, want %q; the handler: %v", line, err, want, <-errs)
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestStreamConnLost: a relayed read that fails is a node lost only when
// the agent's own stream ended too; an agent that ends one container's
// connection abruptly, while it stays, loses no node.
func TestStreamConnLost(t *testing.T) {
	for _, gone := range []bool{false, true} {
		a := &nodeAgent{node: "n1", gone: make(chan struct{})}
		if gone {
			close(a.gone)
		}
		send, _, errs := overStream(t, func(c *streamConn) error {
			c.agent, c.node = a, a.node
			_, err := c.Read(make([]byte, 8))
			return err
		})
		send.(*io.PipeWriter).CloseWithError(errors.New("the container's connection broke"))
		err := <-errs
		var le *lostError
		if err == nil || errors.As(err, &le) != gone {
			t.Errorf("agent gone %v: the read's error %v, want a lostError: %v", gone, err, gone)
		}
	}
}

// overStream serves one HTTP/2 stream whose handler gives a streamConn of
// it to serve, and returns the client's ends: what it sends, what it
// receives, and serve's error once the handler is done.
func overStream(t *testing.T, serve func(c *streamConn) error) (io.WriteCloser, *bufio.Reader, <-chan error) {
	t.Helper()
	errs := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		errs <- serve(&streamConn{body: r.Body, w: w, rc: rc, closed: make(chan struct{}), dlChanged: make(chan struct{})})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/%d, want 2", resp.ProtoMajor)
	}
	return pw, bufio.NewReader(resp.Body), errs
}
