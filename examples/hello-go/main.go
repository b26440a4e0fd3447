// Command hello is the Go sample Mini Lambda function: it reads a JSON event
// such as {"name": "Ada"} on stdin and writes {"message": "Hello, Ada!"} on
// stdout; its log line goes to stderr. Built static, it runs in a FROM scratch
// image:
//
//	CGO_ENABLED=0 go build -o examples/hello-go/hello ./examples/hello-go
//	docker build -t hello-go examples/hello-go
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Event is what the function expects on stdin.
type Event struct {
	Name string `json:"name"`
}

// Result is what it writes on stdout.
type Result struct {
	Message string `json:"message"`
}

func handle(e Event) Result {
	if e.Name == "" {
		e.Name = "World"
	}
	return Result{Message: fmt.Sprintf("Hello, %s!", e.Name)}
}

func run(stdin io.Reader, stdout, stderr io.Writer) error {
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read event: %w", err)
	}
	var e Event
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("the event is not a JSON object: %w", err)
		}
	}
	fmt.Fprintf(stderr, "hello: greeting %q\n", e.Name)
	return json.NewEncoder(stdout).Encode(handle(e))
}

func main() {
	if err := run(os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}
