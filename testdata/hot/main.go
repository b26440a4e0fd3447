// Command hot is a hot-mode test function: one JSON event per line in, one
// result line out, steered by the event.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"
)

type event struct {
	Name   string `json:"name"`
	Crash  bool   `json:"crash"`
	HangMS int    `json:"hang_ms"`
	Twice  bool   `json:"twice"`
	// Quiet skips the "handling" log line; LogBytes more bytes of logs
	// (the name and a '|', repeated) go just before the result line, and
	// After, AfterMS after it, once the result is out.
	Quiet    bool   `json:"quiet"`
	LogBytes int    `json:"log_bytes"`
	After    string `json:"after"`
	AfterMS  int    `json:"after_ms"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 8<<20)
	out := bufio.NewWriter(os.Stdout)
	count := 0
	for in.Scan() {
		count++
		var e event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil {
			fmt.Fprintln(os.Stderr, "bad event:", err)
		}
		if !e.Quiet {
			fmt.Fprintf(os.Stderr, "handling %q\n", e.Name)
		}
		if e.Crash {
			os.Exit(3)
		}
		time.Sleep(time.Duration(e.HangMS) * time.Millisecond)
		if e.LogBytes > 0 {
			os.Stderr.Write(pattern(e.Name, e.LogBytes))
		}
		b, _ := json.Marshal(map[string]any{"message": "Hello, " + e.Name + "!", "count": count, "pid": os.Getpid(), "procs": runtime.GOMAXPROCS(0)})
		out.Write(append(b, '\n'))
		if e.Twice {
			out.Write(append(b, '\n'))
		}
		out.Flush()
		if e.After != "" {
			time.Sleep(time.Duration(e.AfterMS) * time.Millisecond)
			os.Stderr.WriteString(e.After)
		}
	}
}

// pattern is n bytes of name and '|', repeated.
func pattern(name string, n int) []byte {
	unit := []byte(name + "|")
	b := make([]byte, 0, n+len(unit))
	for len(b) < n {
		b = append(b, unit...)
	}
	return b[:n]
}
