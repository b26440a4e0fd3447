// Command echo is a test function: it answers the JSON event it reads on
// stdin with {"event": <event>, "greeting": $GREETING, "bytes": n} on stdout
// and logs one line to stderr.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read stdin:", err)
		os.Exit(1)
	}
	var event any
	if err := json.Unmarshal(in, &event); err != nil {
		fmt.Fprintln(os.Stderr, "bad event:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "echo: got %d bytes\n", len(in))
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"event":    event,
		"greeting": os.Getenv("GREETING"),
		"bytes":    len(in),
	})
}
