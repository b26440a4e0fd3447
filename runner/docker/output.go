package docker

import "sync"

// capBuffer keeps the first limit bytes written to it and discards the rest,
// recording that it did and calling onExceed once. It never fails a write, so
// the demultiplexer keeps draining the stream while the container is killed.
type capBuffer struct {
	mu        sync.Mutex
	buf       []byte
	limit     int
	truncated bool
	onExceed  func()
}

func newCapBuffer(limit int64, onExceed func()) *capBuffer {
	return &capBuffer{limit: int(limit), onExceed: onExceed}
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	if len(p) <= room {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	if !c.truncated {
		c.truncated = true
		if c.onExceed != nil {
			c.onExceed()
		}
	}
	return len(p), nil
}

// bytes returns what was kept and whether anything was discarded.
func (c *capBuffer) bytes() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}
