// Command hotlogs is a hot-mode test function that writes logs around its
// result lines as each event says: {"id": ID, "before": N, "after": M,
// "pad": P} writes N bytes of stderr, then the result line {"id": ID,
// "pad": "ppp..."} with P bytes of padding, then M bytes of stderr.
//
// The logs are lines of 1 KiB, written one at a time, each beginning with
// the event's ID, "before" or "after", and the line's number (see
// logLine), so that a test can tell exactly whose they are.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	ID     string `json:"id"`
	Before int    `json:"before"`
	After  int    `json:"after"`
	Pad    int    `json:"pad"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 8<<20)
	for in.Scan() {
		var e event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil {
			fmt.Fprintln(os.Stderr, "bad event:", err)
			os.Exit(2)
		}
		writeLogs(e.ID+" before", e.Before)
		b, _ := json.Marshal(map[string]string{"id": e.ID, "pad": strings.Repeat("p", e.Pad)})
		if _, err := os.Stdout.Write(append(b, '\n')); err != nil {
			os.Exit(1)
		}
		writeLogs(e.ID+" after", e.After)
	}
}

// writeLogs writes n bytes to stderr, a line at a time.
func writeLogs(tag string, n int) {
	for i := 0; n > 0; i++ {
		line := logLine(tag, i, min(n, 1024))
		if _, err := os.Stderr.Write(line); err != nil {
			os.Exit(1)
		}
		n -= len(line)
	}
}

// logLine is line i of size bytes, its newline included, of the logs
// tagged tag.
func logLine(tag string, i, size int) []byte {
	line := fmt.Appendf(nil, "%s %06d ", tag, i)
	for len(line) < size {
		line = append(line, 'x')
	}
	line = line[:size]
	line[size-1] = '\n'
	return line
}
