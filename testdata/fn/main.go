// Command fn is the function the tests invoke: what it does is steered by
// its event, so that one image serves every case.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type event struct {
	Name    string `json:"name"`
	Exit    int    `json:"exit"`
	SleepMS int    `json:"sleep_ms"`
	// FailUntil makes every attempt before this Unix time in milliseconds
	// fail, so a retry after it succeeds.
	FailUntil int64 `json:"fail_until"`
}

func main() {
	var e event
	if err := json.NewDecoder(os.Stdin).Decode(&e); err != nil {
		fmt.Fprintln(os.Stderr, "bad event:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "handling %q\n", e.Name)
	time.Sleep(time.Duration(e.SleepMS) * time.Millisecond)
	if e.FailUntil > time.Now().UnixMilli() {
		fmt.Fprintln(os.Stderr, "too early")
		os.Exit(4)
	}
	if e.Exit != 0 {
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(e.Exit)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"message": "Hello, " + e.Name + "!"})
}
