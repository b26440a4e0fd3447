// Command hot is a hot-mode test function: one JSON event per line in, one
// result line out, steered by the event.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type event struct {
	Name   string `json:"name"`
	Crash  bool   `json:"crash"`
	HangMS int    `json:"hang_ms"`
	Twice  bool   `json:"twice"`
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
		fmt.Fprintf(os.Stderr, "handling %q\n", e.Name)
		if e.Crash {
			os.Exit(3)
		}
		time.Sleep(time.Duration(e.HangMS) * time.Millisecond)
		b, _ := json.Marshal(map[string]any{"message": "Hello, " + e.Name + "!", "count": count, "pid": os.Getpid()})
		out.Write(append(b, '\n'))
		if e.Twice {
			out.Write(append(b, '\n'))
		}
		out.Flush()
	}
}
