// Command echo is a test function: it answers the JSON event it reads on
// stdin with {"event": <event>, "greeting": $GREETING, "bytes": n,
// "agent_secret": $MINILAMBDA_AGENT_SECRET} on stdout (the init removes the
// secret before it starts the function: it must be empty) and logs one
// line to stderr.
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
		// The container's secret is its init's alone.
		"agent_secret": os.Getenv("MINILAMBDA_AGENT_SECRET"),
	})
}
