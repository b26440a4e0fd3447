// Command lambdainit is the first process of every container of a lambda
// function. It listens on 127.0.0.1:9001 inside the container, where the
// function's runtime finds the Lambda Runtime API, and passes each
// connection the runtime makes, as it is, to the server through a socket
// mounted into the container: from then on the server and the runtime talk
// directly, with nothing copied in between. It starts the image's own
// entrypoint and command as its child and collects what the child writes to
// stdout and stderr; the server asks for what has been collected when the
// runtime answers an invocation, so that logs reach the invocation they were
// written during, exactly. As PID 1 it reaps orphans and passes termination
// signals on, and it tells the server how the runtime exited.
//
// It imports the standard library only: the server builds it with
// CGO_ENABLED=0 into a static binary that runs in any image, FROM scratch
// included.
//
// Usage:
//
//	lambdainit SOCKET LOG_LIMIT -- COMMAND [ARG...]
//
// On the socket, each connection begins with one byte: 'C' for the one
// control connection, 'F' for a connection that carries one file
// descriptor (the runtime's connection) and then closes. On the control
// connection, frames are a type byte, a 4-byte big-endian length and the
// payload: the server sends 'F' (flush: send the logs collected so far),
// the init answers 'L' (8 bytes of dropped count, then the logs) and, at
// the end, sends 'X' (4 bytes of JSON length, the JSON exit report, then
// the last logs).
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const (
	listenAddr   = "127.0.0.1:9001"
	exitDrainFor = 100 * time.Millisecond
)

func main() {
	// The init carries little: one processor and a lazier collector keep
	// its share of the machine small, whatever the function's environment
	// asks of Go programs.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400)
	if len(os.Args) < 5 || os.Args[3] != "--" {
		fmt.Fprintln(os.Stderr, "usage: lambdainit SOCKET LOG_LIMIT -- COMMAND [ARG...]")
		os.Exit(2)
	}
	limit, err := strconv.Atoi(os.Args[2])
	if err != nil || limit <= 0 {
		fmt.Fprintln(os.Stderr, "lambdainit: LOG_LIMIT must be a positive number of bytes")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], limit, os.Args[4:]))
}

// exitReport is what the server hears when the runtime has exited, or
// could not be started.
type exitReport struct {
	Code    int    `json:"code"`
	Signal  string `json:"signal,omitempty"`
	Error   string `json:"error,omitempty"`
	Dropped int64  `json:"dropped,omitempty"`
}

func run(socket string, limit int, command []string) int {
	logs := &collector{limit: limit}
	conn, err := net.Dial("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambdainit: cannot reach the platform:", err)
		return 1
	}
	ctrl := &control{conn: conn}
	if _, err := conn.Write([]byte{'C'}); err != nil {
		fmt.Fprintln(os.Stderr, "lambdainit: cannot reach the platform:", err)
		return 1
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		ctrl.exit(logs, exitReport{Code: 1, Error: fmt.Sprintf("cannot listen on %s for the runtime: %v", listenAddr, err)})
		return 1
	}
	go ctrl.serve(logs)
	go pass(ln, socket)

	// Signals first, so that no SIGCHLD is missed.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	child, err := start(command, logs)
	if err != nil {
		ctrl.exit(logs, exitReport{Code: 127, Error: err.Error()})
		return 127
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			child.Signal(sig)
			continue
		}
		// Reap every child that has exited: orphans are PID 1's to bury.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			if pid != child.Pid {
				continue
			}
			r := exitReport{Code: ws.ExitStatus()}
			if ws.Signaled() {
				r.Code, r.Signal = 128+int(ws.Signal()), ws.Signal().String()
			}
			logs.waitForEOF(exitDrainFor)
			ctrl.exit(logs, r)
			return r.Code
		}
	}
	return 1
}

// pass hands every connection the runtime makes to the server, and keeps
// no copy of it. An accept that fails (out of descriptors, most likely) is
// tried again after a pause that doubles from 5 ms to a second, as
// net/http's Serve does: the runtime's endpoint ends only with the init.
func pass(ln net.Listener, socket string) {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			continue
		}
		if u, err := net.Dial("unix", socket); err == nil {
			u.(*net.UnixConn).WriteMsgUnix([]byte{'F'}, syscall.UnixRights(int(f.Fd())), nil)
			u.Close()
		}
		f.Close()
	}
}

// control is the init's end of the control connection.
type control struct {
	conn net.Conn
	mu   sync.Mutex // one frame at a time
}

func (c *control) send(typ byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	frame := make([]byte, 5, 5+n)
	frame[0] = typ
	binary.BigEndian.PutUint32(frame[1:], uint32(n))
	for _, p := range parts {
		frame = append(frame, p...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.conn.Write(frame)
	return err
}

// serve answers the server's flushes until the connection ends.
func (c *control) serve(logs *collector) {
	var head [5]byte
	for {
		if _, err := io.ReadFull(c.conn, head[:]); err != nil {
			return
		}
		if n := binary.BigEndian.Uint32(head[1:]); n > 0 {
			if _, err := io.CopyN(io.Discard, c.conn, int64(n)); err != nil {
				return
			}
		}
		if head[0] != 'F' {
			continue
		}
		got, dropped := logs.take()
		var d [8]byte
		binary.BigEndian.PutUint64(d[:], uint64(dropped))
		if c.send('L', d[:], got) != nil {
			return
		}
	}
}

// exit reports how the runtime ended, with its last logs.
func (c *control) exit(logs *collector, r exitReport) {
	got, dropped := logs.take()
	r.Dropped = dropped
	report, _ := json.Marshal(r)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(report)))
	c.send('X', n[:], report, got)
	c.conn.Close()
}

// start runs the command with the init's environment, its stdin empty and
// its stdout and stderr into the collector.
func start(command []string, logs *collector) (*os.Process, error) {
	path, err := exec.LookPath(command[0])
	if err != nil {
		return nil, fmt.Errorf("the image's entrypoint %q cannot run: %v", command[0], err)
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	// One pipe for both, as 2>&1 does: the logs keep the order in which
	// the runtime wrote them, across the two streams.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	proc, err := os.StartProcess(path, command, &os.ProcAttr{Env: os.Environ(), Files: []*os.File{stdin, w, w}})
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("the image's entrypoint %q cannot run: %v", command[0], err)
	}
	logs.follow(r)
	return proc, nil
}

// collector gathers what the child writes to its stdout and stderr into
// one buffer of at most limit bytes. It reads the pipe under its lock, so
// that taking the logs first reads everything the child wrote before the
// server asked: nothing is in flight between the pipe and the buffer.
type collector struct {
	limit int

	mu      sync.Mutex
	buf     []byte
	dropped int64
	fds     map[int]bool  // pipes not at their end yet
	eof     chan struct{} // closed once every pipe has ended
	chunk   [32 << 10]byte
}

// follow reads a pipe until it ends, a chunk at a time, each under the
// lock: a flush waits for one chunk at most, however fast the runtime
// writes.
func (c *collector) follow(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	c.mu.Lock()
	if c.fds == nil {
		c.fds = make(map[int]bool)
		c.eof = make(chan struct{})
	}
	rc.Control(func(fd uintptr) { c.fds[int(fd)] = true })
	c.mu.Unlock()
	go func() {
		defer f.Close()
		rc.Read(func(fd uintptr) bool {
			for {
				c.mu.Lock()
				_, st := c.readLocked(int(fd), len(c.chunk))
				c.mu.Unlock()
				if st != readMore {
					return st == readEnded
				}
			}
		})
	}()
}

// What one read of a pipe found.
const (
	readMore  = iota // bytes; there may be more
	readAgain        // nothing now
	readEnded        // the pipe has ended, or broke
)

// readLocked reads at most n bytes of a pipe once.
func (c *collector) readLocked(fd, n int) (int, int) {
	if !c.fds[fd] {
		return 0, readEnded
	}
	for {
		got, err := syscall.Read(fd, c.chunk[:min(n, len(c.chunk))])
		switch {
		case got > 0:
			keep := min(got, c.limit-len(c.buf))
			c.buf = append(c.buf, c.chunk[:keep]...)
			c.dropped += int64(got - keep)
			return got, readMore
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return 0, readAgain
		}
		delete(c.fds, fd)
		if len(c.fds) == 0 {
			close(c.eof)
		}
		return 0, readEnded
	}
}

// take returns the logs collected since the last take, and how many bytes
// past the limit were dropped. It first reads what the pipes hold now, and
// only that: what the runtime wrote before the server asked, however much
// it goes on writing.
func (c *collector) take() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for fd := range c.fds {
		for left := pending(fd); left > 0; {
			got, st := c.readLocked(fd, left)
			left -= got
			if st != readMore {
				break
			}
		}
	}
	got, dropped := c.buf, c.dropped
	c.buf, c.dropped = nil, 0
	return got, dropped
}

// pending is how many bytes a pipe holds, unread.
func pending(fd int) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}

// waitForEOF waits a little for the pipes to end once the child has
// exited: a process it left behind may still hold them.
func (c *collector) waitForEOF(d time.Duration) {
	c.mu.Lock()
	eof := c.eof
	c.mu.Unlock()
	if eof == nil {
		return
	}
	select {
	case <-eof:
	case <-time.After(d):
	}
}
