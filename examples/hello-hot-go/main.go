// Command hello-hot-go is a hot Mini Lambda function in Go: it stays up
// and answers one JSON event per line on stdin with one line on stdout.
// Build it FROM scratch:
//
//	CGO_ENABLED=0 go build -o examples/hello-hot-go/hello ./examples/hello-hot-go
//	docker build -t hello-hot examples/hello-hot-go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 6<<20) // events up to the API's 6 MiB
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var event struct {
			Name string `json:"name"`
		}
		answer := map[string]string{}
		if err := json.Unmarshal(in.Bytes(), &event); err != nil {
			answer["error"] = "the event is not JSON: " + err.Error()
		} else {
			if event.Name == "" {
				event.Name = "World"
			}
			answer["message"] = "Hello, " + event.Name + "!"
		}
		fmt.Fprintln(os.Stderr, "hello-hot-go: handled one event")
		line, _ := json.Marshal(answer)
		out.Write(append(line, '\n'))
		out.Flush() // one answer per event, now: the platform waits for it
	}
}
