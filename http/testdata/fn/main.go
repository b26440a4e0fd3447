// Command fn is the test function of the API tests: what it does is
// steered by its event.
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
}

func main() {
	var e event
	if err := json.NewDecoder(os.Stdin).Decode(&e); err != nil {
		fmt.Fprintln(os.Stderr, "bad event:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "handling %q\n", e.Name)
	time.Sleep(time.Duration(e.SleepMS) * time.Millisecond)
	if e.Exit != 0 {
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(e.Exit)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"message": "Hello, " + e.Name + "!"})
}
