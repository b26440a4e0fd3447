// Command fn is the function the tests invoke: what it does is steered by
// its event, so that one image serves every case, hostile ones included.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

type event struct {
	Name    string `json:"name"`
	Exit    int    `json:"exit"`
	SleepMS int    `json:"sleep_ms"`
	// FailUntil makes every attempt before this Unix time in milliseconds
	// fail, so a retry after it succeeds.
	FailUntil int64 `json:"fail_until"`
	// AllocMB allocates and touches this much memory.
	AllocMB int `json:"alloc_mb"`
	// FloodBytes writes this many bytes to stdout and to stderr.
	FloodBytes int `json:"flood_bytes"`
	// ForkBomb starts copies of itself that start copies of themselves.
	ForkBomb bool `json:"fork_bomb"`
	// WriteFile writes a file at this path.
	WriteFile string `json:"write_file"`
	// Dial tries a TCP connection to this address, and answers what came
	// of it.
	Dial string `json:"dial"`
	// Status answers the process's NoNewPrivs and CapEff from
	// /proc/self/status.
	Status bool `json:"status"`
}

// answer is the result: a greeting, and what the event asked to find out.
type answer struct {
	Message    string `json:"message"`
	Dial       string `json:"dial,omitempty"`
	NoNewPrivs string `json:"no_new_privs,omitempty"`
	CapEff     string `json:"cap_eff,omitempty"`
}

func main() {
	if os.Getenv("FN_CHILD") == "1" {
		bomb()
		select {}
	}
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
	if e.AllocMB > 0 {
		var keep [][]byte
		for i := 0; i < e.AllocMB; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Fprintln(os.Stderr, "allocated", len(keep), "MiB")
	}
	if e.FloodBytes > 0 {
		out, errOut := bufio.NewWriter(os.Stdout), bufio.NewWriter(os.Stderr)
		for i := 0; i < e.FloodBytes; i++ {
			out.WriteByte('x')
			errOut.WriteByte('y')
		}
		out.Flush()
		errOut.Flush()
	}
	if e.ForkBomb {
		if err := bomb(); err != nil {
			fmt.Fprintln(os.Stderr, "spawn limited:", err)
		}
	}
	if e.WriteFile != "" {
		if err := os.WriteFile(e.WriteFile, []byte("x"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "write failed:", err)
			os.Exit(5)
		}
		fmt.Fprintln(os.Stderr, "wrote", e.WriteFile)
	}
	if e.Exit != 0 {
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(e.Exit)
	}
	a := answer{Message: "Hello, " + e.Name + "!"}
	if e.Dial != "" {
		a.Dial = "connected"
		if c, err := net.DialTimeout("tcp", e.Dial, 2*time.Second); err != nil {
			a.Dial = err.Error()
		} else {
			c.Close()
		}
	}
	if e.Status {
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "NoNewPrivs":
				a.NoNewPrivs = strings.TrimSpace(v)
			case "CapEff":
				a.CapEff = strings.TrimSpace(v)
			}
		}
	}
	json.NewEncoder(os.Stdout).Encode(a)
}

// bomb starts children until starting one fails, and returns that error.
func bomb() error {
	for {
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = []string{"FN_CHILD=1"}
		if err := cmd.Start(); err != nil {
			return err
		}
	}
}
