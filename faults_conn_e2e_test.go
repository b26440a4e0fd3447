package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
)

// cfLimited is the server binary run under an open-file limit of n, so
// that its connection cap is n/2.
func cfLimited(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "limited")
	script := "#!/bin/sh\nulimit -n " + strconv.Itoa(n) + " && exec " + binary(t) + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// cfClosedAfter reads what follows a response on conn and says whether
// the server closed the connection within d.
func cfClosedAfter(conn net.Conn, br *bufio.Reader, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// cfGetWithToken is GET path with the token, and how long it took.
func cfGetWithToken(addr, path, token string) (int, time.Duration, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, time.Since(begin), err
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(begin), nil
}

// TestStrangersCannotHoldConnections sends a server with a connection cap
// of 128 (under a limit of 256 descriptors) strangers of two kinds: first
// 245 that send a request's headers without the token and then trickle
// its body, then 245 that trickle their headers and come back 200 ms
// after they are cut. The first kind all get their 401 at once, and the
// server closes their connections without reading the body; the second
// cannot keep out clients with the token, who get their answers within
// the client's 5 s while the strangers go on.
func TestStrangersCannotHoldConnections(t *testing.T) {
	dockertest.Client(t)
	dir := t.TempDir()
	const token = "stranger-conns-token"
	db := filepath.Join(dir, "events.db")
	s := startBinary(t, cfLimited(t, 256), db, "--token", token)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()

	// GET /ui goes where GET /ui/ is, token or not.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := client.Get("http://" + s.addr + "/ui"); err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui with a token set: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	var answered, cut atomic.Int32
	for range 245 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				return
			}
			defer conn.Close()
			context.AfterFunc(ctx, func() { conn.Close() })
			io.WriteString(conn, "POST /functions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}()
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusUnauthorized {
				return
			}
			answered.Add(1)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if cfClosedAfter(conn, br, 3*time.Second) {
				cut.Add(1)
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); answered.Load() < 245 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := answered.Load(); n < 245 {
		t.Errorf("only %d of 245 strangers without the token were answered 401", n)
	}
	for range 245 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				conn, err := net.Dial("tcp", s.addr)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				stopClose := context.AfterFunc(ctx, func() { conn.Close() })
				io.WriteString(conn, "GET /functions HTTP/1.1\r\nHost: x\r\n")
				for ctx.Err() == nil {
					if _, err := conn.Write([]byte("X")); err != nil {
						break
					}
					conn.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := conn.Read(make([]byte, 1)); err != nil {
						if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
							break // closed by the server
						}
					}
				}
				stopClose()
				conn.Close()
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}

	time.Sleep(8 * time.Second)
	var slowest time.Duration
	for i := range 3 {
		code, d, err := cfGetWithToken(s.addr, "/functions", token)
		if err != nil || code != 200 {
			t.Errorf("request %d with the token among the strangers: %d %v after %v", i, code, err, d)
		}
		slowest = max(slowest, d)
	}
	t.Logf("slowest of 3 requests with the token among 490 strangers: %v", slowest)
	if n := cut.Load(); n < answered.Load() {
		t.Errorf("the server closed %d of %d refused strangers' connections; it kept the rest to read their bodies", n, answered.Load())
	}
	stop()
	wg.Wait()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if strings.Contains(s.out.String(), "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", s.out)
	}
	assertAudit(t, db)
}

// TestStrangersCannotHoldTheBudget has 16 strangers, half signed with the
// Lambda API's public default key id and a wrong signature, half calling
// an HMAC hook with a wrong signature, each declaring a 4 MiB body and
// sending it at 80 KiB/s (fast enough for the server's minimum pace), on
// a server with a 64 MiB memory budget. They hold only what they sent, in
// a share of the budget of their own, so calls with the token are not
// refused for memory; one refused from its headers alone (an unknown key)
// gets its 403 at once and is cut without its body being read.
func TestStrangersCannotHoldTheBudget(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildSample(t, cli, "examples/hello-go", "minilambda-e2e-budget")
	const token = "stranger-budget-token"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token, "--memory-budget", strconv.Itoa(64<<20))
	if code := s.callToken("POST", "/functions", map[string]any{"name": "hello", "image": img.Tag,
		"http_trigger": map[string]any{"auth": "hmac", "hmac_secret": "a-secret-nobody-here-knows"}}, token); code != 201 {
		t.Fatalf("register: %d", code)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()

	const declared = 4 << 20
	now := time.Now().UTC()
	sigv4 := fmt.Sprintf("Authorization: AWS4-HMAC-SHA256 Credential=minilambda/%s/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=%s\r\nX-Amz-Date: %s\r\n",
		now.Format("20060102"), strings.Repeat("0", 64), now.Format("20060102T150405Z"))
	heads := map[int]string{}
	for i := range 16 {
		if i%2 == 0 {
			heads[i] = "POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\n" + sigv4
		} else {
			heads[i] = "POST /hooks/hello HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\n"
		}
	}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				return
			}
			defer conn.Close()
			context.AfterFunc(ctx, func() { conn.Close() })
			fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n", heads[i], declared)
			chunk := make([]byte, 8<<10)
			for sent := 0; sent < declared && ctx.Err() == nil; sent += len(chunk) {
				if _, err := conn.Write(chunk); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	time.Sleep(3 * time.Second)

	var held float64
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "minilambda_memory_budget_used_bytes "); ok {
				held, _ = strconv.ParseFloat(v, 64)
			}
		}
		resp.Body.Close()
	}
	t.Logf("16 strangers declaring 4 MiB each hold %.1f MiB of the budget", held/(1<<20))
	if held > 16<<20 {
		t.Errorf("16 strangers hold %.1f MiB of the 64 MiB budget; their share is 16 MiB", held/(1<<20))
	}
	for i := range 5 {
		var inv struct {
			Status string `json:"status"`
		}
		if code := s.callAs("POST", "/invoke/hello", map[string]any{"event": map[string]any{"name": "Ada"}}, &inv, token); code != 200 || inv.Status != "COMPLETED" {
			t.Errorf("invoke %d with the token beside the strangers: %d %s", i, code, inv.Status)
		}
	}

	// Refused from its headers alone: answered at once, nothing read.
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n",
		strings.Replace(sigv4, "Credential=minilambda/", "Credential=someone-else/", 1), declared)
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unknown key id: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if !cfClosedAfter(conn, br, time.Second) {
		t.Error("the connection of a request refused for its key stayed open")
	}
	stop()
	wg.Wait()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	assertAudit(t, db)
}
