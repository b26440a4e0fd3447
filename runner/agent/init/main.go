// Command init is the first process of every function container, in every
// mode: the one agent through which a function's data reaches the server.
// It talks to the server over a Unix socket mounted into the container
// alone, starts the image's own entrypoint and command as its child, and
// carries the child's input and output itself, so that the engine copies
// none of it:
//
//   - cold: it writes the event the server sends to the child's stdin and
//     closes it, reads stdout and stderr apart (each bounded by the output
//     limit; past it the child is killed), and when the child exits sends
//     its exit code, whether the kernel's OOM killer struck, and both
//     outputs;
//   - hot: it writes each event, as one line, to the child's stdin, and
//     when the result line arrives on stdout it takes what is already in
//     the stderr pipe: an invocation's logs are all the child wrote before
//     its result line, and what it writes after belongs to none (but for a
//     write in the same instant as the line, which may still count with
//     it);
//   - lambda: it listens on 127.0.0.1:9001, where the runtime finds the
//     Lambda Runtime API, and passes each connection the runtime makes, as
//     it is, to the server; it collects stdout and stderr together and
//     hands the server what it has collected whenever the server asks.
//
// As PID 1 it reaps orphans and passes termination signals on.
//
// It imports the standard library only: the server builds it with
// CGO_ENABLED=0 into a static binary that runs in any image, FROM scratch
// included.
//
// Usage:
//
//	init -mode cold|hot|lambda -socket SOCKET -limit BYTES -- COMMAND [ARG...]
//
// The container's secret is in the environment variable named by
// secretEnv (64 hex digits); the init removes it before it starts the
// child.
//
// # Protocol, version 1
//
// Every connection to the socket begins with one message of 34 bytes: a
// kind ('C' for the one control connection, 'F' for a connection that
// carries one file descriptor, the runtime's connection, and then closes),
// the protocol version (1) and the container's 32-byte secret. The server
// closes a connection whose version or secret is not its own.
//
// On the control connection, frames are a type byte, a 4-byte big-endian
// length and the payload. The server sends:
//
//	'E' event: the payload is the event (cold: the whole of stdin; hot:
//	    one line, without its newline)
//	'F' flush (lambda): send the logs collected so far
//	'K' kill: kill the child now (a timeout); the exit report follows
//
// and the init sends:
//
//	'L' logs (lambda, the answer to a flush): 8 bytes of dropped count,
//	    the logs
//	'R' result (hot): 1 byte of flags (1: the line passed the limit, and
//	    the child is being killed), 8 bytes of dropped log count, 4 bytes
//	    of line length, the line with its newline, the logs
//	'X' exit, the last frame: 4 bytes of JSON length, the JSON
//	    [exitReport], stdout (cold; its length is in the report), and the
//	    last logs (stderr)
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const (
	protocolVersion = 1
	secretEnv       = "MINILAMBDA_AGENT_SECRET"
	secretLen       = 32
	listenAddr      = "127.0.0.1:9001"
	exitDrainFor    = 100 * time.Millisecond
)

func main() {
	// The init carries little: one processor and a lazier collector keep
	// its share of the machine small, whatever the function's environment
	// asks of Go programs.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400)
	cfg, err := parseArgs(os.Args[1:], os.Getenv(secretEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		fmt.Fprintln(os.Stderr, "usage: init -mode cold|hot|lambda -socket SOCKET -limit BYTES -- COMMAND [ARG...]")
		os.Exit(2)
	}
	os.Unsetenv(secretEnv)
	os.Exit(run(cfg))
}

type config struct {
	mode, socket string
	limit        int
	secret       []byte
	command      []string
}

func parseArgs(args []string, secret string) (config, error) {
	var c config
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.mode, "mode", "", "cold, hot or lambda")
	fs.StringVar(&c.socket, "socket", "", "the server's socket")
	fs.IntVar(&c.limit, "limit", 0, "bytes of output kept")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.command = fs.Args()
	switch {
	case c.mode != "cold" && c.mode != "hot" && c.mode != "lambda":
		return c, fmt.Errorf("unknown mode %q", c.mode)
	case c.socket == "":
		return c, errors.New("no socket")
	case c.limit <= 0:
		return c, errors.New("the limit must be a positive number of bytes")
	case len(c.command) == 0:
		return c, errors.New("no command")
	}
	s, err := hex.DecodeString(secret)
	if err != nil || len(s) != secretLen {
		return c, fmt.Errorf("%s must hold %d hex digits", secretEnv, 2*secretLen)
	}
	c.secret = s
	return c, nil
}

// hello begins every connection to the server.
func hello(kind byte, secret []byte) []byte {
	return append([]byte{kind, protocolVersion}, secret...)
}

// exitReport is what the server hears when the child has exited, or could
// not be started.
type exitReport struct {
	Code          int    `json:"code"`
	Signal        string `json:"signal,omitempty"`
	Error         string `json:"error,omitempty"`
	OOMKilled     bool   `json:"oom_killed,omitempty"`
	Stdout        int    `json:"stdout,omitempty"`
	StdoutDropped int64  `json:"stdout_dropped,omitempty"`
	Dropped       int64  `json:"dropped,omitempty"`
}

// agent is the init's state: the control connection and the child.
type agent struct {
	cfg  config
	ctrl *control
	logs *collector // lambda: stdout and stderr; hot: stderr

	mu          sync.Mutex
	child       *os.Process
	killPending bool     // a kill was asked for before the child started
	stdin       *os.File // cold and hot

	// cold: the outputs, each bounded; drained closes when both ended.
	stdout, stderr *capped
	drained        chan struct{}
	// hot: the line reader's end, and the events for the child's stdin,
	// written in order by one writer.
	linesDone chan struct{}
	events    chan []byte
}

func run(cfg config) int {
	conn, err := net.Dial("unix", cfg.socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "init: cannot reach the platform:", err)
		return 1
	}
	if _, err := conn.Write(hello('C', cfg.secret)); err != nil {
		fmt.Fprintln(os.Stderr, "init: cannot reach the platform:", err)
		return 1
	}
	a := &agent{cfg: cfg, ctrl: &control{conn: conn}, logs: &collector{limit: cfg.limit}}
	oomBefore := oomKills()
	if cfg.mode == "lambda" {
		ln, err := net.Listen("tcp", listenAddr)
		if err != nil {
			a.ctrl.exit(exitReport{Code: 1, Error: fmt.Sprintf("cannot listen on %s for the runtime: %v", listenAddr, err)}, nil, a.logs)
			return 1
		}
		go pass(ln, cfg.socket, cfg.secret)
	}

	// Signals first, so that no SIGCHLD is missed.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	if err := a.start(); err != nil {
		a.ctrl.exit(exitReport{Code: 127, Error: err.Error()}, nil, a.logs)
		return 127
	}
	go a.serve()
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			a.child.Signal(sig)
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
			if pid != a.child.Pid {
				continue
			}
			r := exitReport{Code: ws.ExitStatus()}
			if ws.Signaled() {
				r.Code, r.Signal = 128+int(ws.Signal()), ws.Signal().String()
			}
			r.OOMKilled = oomKills() > oomBefore
			a.exited(r)
			return r.Code
		}
	}
	return 1
}

// start runs the command with the init's environment and the mode's
// pipes.
func (a *agent) start() error {
	command := a.cfg.command
	path, err := exec.LookPath(command[0])
	if err != nil {
		return fmt.Errorf("the image's entrypoint %q cannot run: %v", command[0], err)
	}
	var files []*os.File
	var mine []*os.File // the child's ends, closed once it has them
	defer func() {
		for _, f := range mine {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		return
	}
	switch a.cfg.mode {
	case "lambda":
		stdin, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		// One pipe for both, as 2>&1 does: the logs keep the order in
		// which the runtime wrote them, across the two streams.
		r, w, err := pipe()
		if err != nil {
			stdin.Close()
			return err
		}
		mine = append(mine, stdin, w)
		files = []*os.File{stdin, w, w}
		defer a.logs.follow(r)
	default:
		inR, inW, err := pipe()
		if err != nil {
			return err
		}
		outR, outW, err := pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			return err
		}
		errR, errW, err := pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			outR.Close()
			outW.Close()
			return err
		}
		mine = append(mine, inR, outW, errW)
		files = []*os.File{inR, outW, errW}
		a.stdin = inW
		if a.cfg.mode == "cold" {
			a.stdout = &capped{limit: a.cfg.limit, over: a.killChild}
			a.stderr = &capped{limit: a.cfg.limit, over: a.killChild}
			a.drained = make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a.stdout.drain(outR) }()
			go func() { defer wg.Done(); a.stderr.drain(errR) }()
			go func() { wg.Wait(); close(a.drained) }()
		} else {
			a.linesDone = make(chan struct{})
			a.events = make(chan []byte, 16)
			defer a.logs.follow(errR)
			go a.readLines(outR)
			go func() {
				for e := range a.events {
					a.stdin.Write(e)
				}
			}()
		}
	}
	proc, err := os.StartProcess(path, command, &os.ProcAttr{Env: os.Environ(), Files: files})
	if err != nil {
		return fmt.Errorf("the image's entrypoint %q cannot run: %v", command[0], err)
	}
	a.mu.Lock()
	a.child = proc
	if a.killPending {
		a.killLocked()
	}
	a.mu.Unlock()
	return nil
}

// killChild kills the child and, when the init is the container's PID 1,
// every process it left: a timeout or an output over the limit ends them
// all. Asked before the child has started, it kills the child as soon as
// it starts.
func (a *agent) killChild() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.child == nil {
		a.killPending = true
		return
	}
	a.killLocked()
}

func (a *agent) killLocked() {
	if os.Getpid() == 1 {
		// Every process of the container but the init itself.
		syscall.Kill(-1, syscall.SIGKILL)
		return
	}
	a.child.Kill()
}

// serve takes the server's frames until the connection ends. Then the
// server is gone, or is closing this container: the child is killed, so
// that the container ends instead of running on with no one to answer
// (a server that died is started again, and removes what is left).
func (a *agent) serve() {
	defer a.killChild()
	br := bufio.NewReaderSize(a.ctrl.conn, 64<<10)
	for {
		typ, payload, err := readFrame(br)
		if err != nil {
			return
		}
		switch typ {
		case 'F':
			if a.cfg.mode == "lambda" {
				got, dropped := a.logs.take()
				var d [8]byte
				binary.BigEndian.PutUint64(d[:], uint64(dropped))
				if a.ctrl.send('L', d[:], got) != nil {
					return
				}
			}
		case 'K':
			a.killChild()
		case 'E':
			switch a.cfg.mode {
			case "cold":
				// Written apart from this loop, so that a child that does
				// not read its stdin cannot stop a kill.
				go func() {
					a.stdin.Write(payload)
					a.stdin.Close()
				}()
			case "hot":
				// What the child wrote since its last result belongs to
				// no invocation.
				a.logs.take()
				// readFrame leaves room for the newline. The server sends
				// one event at a time: a full queue is a child that reads
				// nothing, and is killed.
				select {
				case a.events <- append(payload, '\n'):
				default:
					a.killChild()
				}
			}
		}
	}
}

// readFrame reads one frame, leaving room for one byte after its payload.
func readFrame(r io.Reader) (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(head[1:]))
	payload := make([]byte, n, n+1)
	_, err := io.ReadFull(r, payload)
	return head[0], payload, err
}

// readLines sends each line the hot child writes to stdout as a result,
// with the logs it wrote before it, until stdout ends or a line passes
// the limit.
func (a *agent) readLines(r *os.File) {
	defer close(a.linesDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > a.cfg.limit {
			logs, dropped := a.logs.take()
			a.sendResult(1, dropped, nil, logs)
			a.killChild()
			return
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return
		}
		// Everything the child wrote to stderr before this line is in the
		// pipe by now: take it before anything else is read.
		logs, dropped := a.logs.take()
		if a.sendResult(0, dropped, line, logs) != nil {
			return
		}
		line = line[:0]
	}
}

func (a *agent) sendResult(flags byte, dropped int64, line, logs []byte) error {
	var head [13]byte
	head[0] = flags
	binary.BigEndian.PutUint64(head[1:], uint64(dropped))
	binary.BigEndian.PutUint32(head[9:], uint32(len(line)))
	return a.ctrl.send('R', head[:], line, logs)
}

// exited reports how the child ended, once its outputs have ended too or
// a process it left behind has held them open for exitDrainFor.
func (a *agent) exited(r exitReport) {
	switch a.cfg.mode {
	case "cold":
		select {
		case <-a.drained:
		case <-time.After(exitDrainFor):
		}
		out, outDropped := a.stdout.take()
		errs, errDropped := a.stderr.take()
		r.Stdout, r.StdoutDropped, r.Dropped = len(out), outDropped, errDropped
		a.ctrl.exitWith(r, out, errs)
		return
	case "hot":
		select {
		case <-a.linesDone:
		case <-time.After(exitDrainFor):
		}
	}
	a.logs.waitForEOF(exitDrainFor)
	a.ctrl.exit(r, nil, a.logs)
}

// pass hands every connection the runtime makes to the server, and keeps
// no copy of it. An accept that fails (out of descriptors, most likely) is
// tried again after a pause that doubles from 5 ms to a second, as
// net/http's Serve does: the runtime's endpoint ends only with the init.
func pass(ln net.Listener, socket string, secret []byte) {
	var pause time.Duration
	msg := hello('F', secret)
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
			u.(*net.UnixConn).WriteMsgUnix(msg, syscall.UnixRights(int(f.Fd())), nil)
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
	var head [5]byte
	head[0] = typ
	binary.BigEndian.PutUint32(head[1:], uint32(n))
	bufs := net.Buffers{head[:]}
	for _, p := range parts {
		if len(p) > 0 {
			bufs = append(bufs, p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := bufs.WriteTo(c.conn)
	return err
}

// exit reports how the child ended, with the last logs collected.
func (c *control) exit(r exitReport, stdout []byte, logs *collector) {
	got, dropped := logs.take()
	r.Dropped = dropped
	c.exitWith(r, stdout, got)
}

func (c *control) exitWith(r exitReport, stdout, logs []byte) {
	report, _ := json.Marshal(r)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(report)))
	c.send('X', n[:], report, stdout, logs)
	c.conn.Close()
}

// capped keeps the first limit bytes of what a pipe carries, and calls
// over once when more comes.
type capped struct {
	limit int
	over  func()

	mu      sync.Mutex
	buf     []byte
	dropped int64
}

func (c *capped) drain(r *os.File) {
	defer r.Close()
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			c.mu.Lock()
			keep := min(n, c.limit-len(c.buf))
			c.buf = append(c.buf, chunk[:keep]...)
			first := c.dropped == 0 && keep < n
			c.dropped += int64(n - keep)
			c.mu.Unlock()
			if first {
				c.over()
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *capped) take() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.dropped
}

// oomKills is how many times the kernel's OOM killer has struck in the
// container's memory cgroup (v2, then v1), or 0 when it cannot tell.
func oomKills() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n
			}
		}
	}
	return 0
}

// collector gathers what the child writes to the pipes it follows into
// one buffer of at most limit bytes. It reads the pipes under its lock,
// so that taking the logs first reads everything the child wrote before
// they were asked for: nothing is in flight between a pipe and the buffer.
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
// lock: a take waits for one chunk at most, however fast the child
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
// only that: what the child wrote before it was asked, however much it
// goes on writing.
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
