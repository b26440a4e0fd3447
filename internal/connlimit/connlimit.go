// Package connlimit bounds the connections a server holds at once and
// keeps a share of them for clients that have shown the server's
// credentials.
//
// A connection counts as a stranger's from its accept until a request on
// it is authenticated (Trust). When a connection arrives and every slot is
// taken, or strangers hold their share of the slots already, the oldest
// stranger that has had MinAge to send a request is closed to make room:
// first one outside a handler (still sending its headers, or idle between
// requests), then one inside. With every slot taken and no stranger old
// enough, the newcomer waits. A client with the credentials therefore
// gets a slot within MinAge however many strangers connect, and a burst of
// strangers who send their requests promptly is served, not cut. Per-address
// limits would not do: every client may come from one loopback address
// or one proxy.
package connlimit

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MinAge is how long a stranger's connection is kept, at least, before it
// may be closed to make room.
const MinAge = 500 * time.Millisecond

// Listener is a net.Listener whose connections are *Conn.
type Listener struct {
	net.Listener
	limit, share int
	evicted      atomic.Int64
	freed        chan struct{} // a slot was given back
	done         chan struct{} // closed by Close
	closeOnce    sync.Once

	mu        sync.Mutex
	used      int       // slots held
	strangers list.List // of *Conn, oldest first
}

// New bounds l to limit connections at once, at most share of them
// strangers' before the oldest strangers make room. A share of limit or
// more keeps no slots apart, but strangers still make room when all are
// taken.
func New(l net.Listener, limit, share int) *Listener {
	limit = max(1, limit)
	return &Listener{Listener: l, limit: limit, share: max(1, min(share, limit)),
		freed: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept takes the next connection and finds it a slot.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	conn := &Conn{Conn: c, l: l, born: time.Now()}
	for {
		l.mu.Lock()
		full := l.used >= l.limit
		var victim *Conn
		if full || l.strangers.Len() >= l.share {
			victim = l.victimLocked(time.Now().Add(-MinAge))
		}
		if !full || victim != nil {
			if victim != nil {
				// The victim's slot passes to the newcomer.
				l.strangers.Remove(victim.elem)
				victim.elem, victim.slot = nil, false
			} else {
				l.used++
			}
			conn.slot = true
			conn.elem = l.strangers.PushBack(conn)
			l.mu.Unlock()
			if victim != nil {
				l.evicted.Add(1)
				victim.Conn.Close()
			}
			return conn, nil
		}
		l.mu.Unlock()
		select {
		case <-l.freed:
		case <-time.After(MinAge / 10):
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// victimLocked is the stranger to close, among those born before cutoff:
// the oldest outside a handler, else the oldest; nil if none is so old.
func (l *Listener) victimLocked(cutoff time.Time) *Conn {
	var inside *Conn
	for e := l.strangers.Front(); e != nil; e = e.Next() {
		c := e.Value.(*Conn)
		if c.born.After(cutoff) {
			break
		}
		if c.trusted.Load() {
			continue // Trust is on its way to take it off the list
		}
		if c.handling.Load() == 0 {
			return c
		}
		if inside == nil {
			inside = c
		}
	}
	return inside
}

// Close stops the listener; connections it accepted stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Evicted is how many strangers' connections were closed to make room.
func (l *Listener) Evicted() int64 { return l.evicted.Load() }

// Strangers is how many connections are not trusted yet.
func (l *Listener) Strangers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.strangers.Len()
}

// Conn is a connection of a Listener.
type Conn struct {
	net.Conn
	l        *Listener
	born     time.Time
	handling atomic.Int32 // requests inside a handler
	trusted  atomic.Bool

	// Under l.mu:
	elem *list.Element // in l.strangers while a stranger's
	slot bool          // holds one of l's slots
}

// Trust marks the connection as a client's that has shown the server's
// credentials: it no longer counts against the strangers' share and is
// never closed to make room.
func (c *Conn) Trust() {
	if c.trusted.Swap(true) {
		return
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.elem != nil {
		c.l.strangers.Remove(c.elem)
		c.elem = nil
	}
}

// Handling says a request on the connection has reached its handler (n=1)
// or left it (n=-1): a stranger inside a handler makes room only when no
// other old enough can.
func (c *Conn) Handling(n int) { c.handling.Add(int32(n)) }

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.strangers.Remove(c.elem)
		c.elem = nil
	}
	freed := c.slot
	if freed {
		c.slot = false
		c.l.used--
	}
	c.l.mu.Unlock()
	if freed {
		select {
		case c.l.freed <- struct{}{}:
		default:
		}
	}
	return c.Conn.Close()
}
