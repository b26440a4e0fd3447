package connlimit_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/connlimit"
)

// pair dials l and returns the client's end and the server's.
func pair(t *testing.T, l *connlimit.Listener) (net.Conn, *connlimit.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return client, c.(*connlimit.Conn)
}

// closed says whether the server closed the client's connection.
func closed(t *testing.T, client net.Conn) bool {
	t.Helper()
	client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := client.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err == io.EOF || err != nil
}

func listen(t *testing.T, limit, share int) *connlimit.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(ln, limit, share)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestStrangersMakeRoomForEachOther(t *testing.T) {
	l := listen(t, 4, 2)
	c1, _ := pair(t, l)
	c2, _ := pair(t, l)
	time.Sleep(connlimit.MinAge)
	c3, _ := pair(t, l) // the share is full: the oldest goes
	if !closed(t, c1) {
		t.Error("the oldest stranger was kept past the share")
	}
	if closed(t, c2) || closed(t, c3) {
		t.Error("a stranger within the share was closed")
	}
	if got := l.Strangers(); got != 2 {
		t.Errorf("Strangers() = %d, want 2", got)
	}
	if got := l.Evicted(); got != 1 {
		t.Errorf("Evicted() = %d, want 1", got)
	}
}

func TestYoungStrangersAreKept(t *testing.T) {
	l := listen(t, 3, 1)
	var clients []net.Conn
	for range 3 { // past the share, within the limit: a burst is served
		c, _ := pair(t, l)
		clients = append(clients, c)
	}
	// Every slot is taken: the next waits until the oldest is old enough.
	begin := time.Now()
	pair(t, l)
	if d := time.Since(begin); d < connlimit.MinAge/2 {
		t.Errorf("a stranger was closed for a newcomer after %v", d)
	}
	if !closed(t, clients[0]) {
		t.Error("the oldest stranger was kept with every slot taken")
	}
	for i, c := range clients[1:] {
		if closed(t, c) {
			t.Errorf("stranger %d was closed", i+1)
		}
	}
}

func TestTrustedConnectionsAreKept(t *testing.T) {
	l := listen(t, 4, 2)
	trusted, s1 := pair(t, l)
	s1.Trust()
	busy, s2 := pair(t, l)
	s2.Handling(1) // inside a handler: kept while another can go
	idle, _ := pair(t, l)
	time.Sleep(connlimit.MinAge)
	last, _ := pair(t, l) // the share is full: the idle one goes
	if closed(t, trusted) {
		t.Error("a trusted connection was closed to make room")
	}
	if !closed(t, idle) {
		t.Error("the idle stranger was kept")
	}
	if closed(t, busy) || closed(t, last) {
		t.Error("the stranger inside a handler, or the newest, was closed")
	}
}

func TestNoShareKeepsEveryConnection(t *testing.T) {
	l := listen(t, 3, 3)
	var clients []net.Conn
	for range 2 {
		c, _ := pair(t, l)
		clients = append(clients, c)
	}
	time.Sleep(connlimit.MinAge) // old enough to make room, were there a share
	c, _ := pair(t, l)
	clients = append(clients, c)
	for i, c := range clients {
		if closed(t, c) {
			t.Errorf("connection %d closed with no share set apart", i)
		}
	}
}

func TestClosingFreesASlot(t *testing.T) {
	l := listen(t, 1, 1)
	_, s1 := pair(t, l)
	s1.Trust() // never made to make room
	accepted := make(chan net.Conn, 1)
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case <-accepted:
		t.Fatal("a second connection was accepted past the limit")
	case <-time.After(2 * connlimit.MinAge):
	}
	s1.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("closing a connection did not free its slot")
	}
}
