// Command loadgen sends synchronous invocations to a Mini Lambda server
// from concurrent HTTP clients with keep-alive, as a user's load would,
// from a process of its own, and prints what it measured as one JSON line:
// invocations, their rate, latency percentiles, and how many answers were
// wrong. Each client names its events ("c3-41"); an answer is right when
// it is 200, its result greets that name and its logs name that
// invocation and no other.
//
//	go run ./internal/loadgen -url http://127.0.0.1:8300/invoke/hello -clients 16 -for 10s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Report is the line loadgen prints.
type Report struct {
	Invocations int     `json:"invocations"`
	PerSecond   float64 `json:"per_second"`
	P50MS       float64 `json:"p50_ms"`
	P90MS       float64 `json:"p90_ms"`
	P99MS       float64 `json:"p99_ms"`
	MaxMS       float64 `json:"max_ms"`
	Wrong       int     `json:"wrong"`
	FirstWrong  string  `json:"first_wrong,omitempty"`
}

func main() {
	url := flag.String("url", "", "the function's sync invoke URL")
	clients := flag.Int("clients", 1, "concurrent clients")
	d := flag.Duration("for", 10*time.Second, "how long to send")
	token := flag.String("token", "", "the API token, if the server has one")
	total := flag.Int("n", 0, "stop after this many calls, all clients together (0: no count, only -for)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	var mu sync.Mutex
	var lat []time.Duration
	r := Report{}
	stop := time.Now().Add(*d)
	begin := time.Now()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(stop) && (*total == 0 || sent.Add(1) <= int64(*total)); i++ {
				name := "c" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
				t := time.Now()
				why := invoke(client, *url, *token, name)
				mine = append(mine, time.Since(t))
				if why != "" {
					mu.Lock()
					r.Wrong++
					if r.FirstWrong == "" {
						r.FirstWrong = why
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	r.Invocations = len(lat)
	r.PerSecond = float64(len(lat)) / elapsed.Seconds()
	r.P50MS, r.P90MS, r.P99MS, r.MaxMS = pct(.5), pct(.9), pct(.99), pct(1)
	json.NewEncoder(os.Stdout).Encode(r)
}

// invoke sends one event and says what is wrong with the answer, if
// anything.
func invoke(client *http.Client, url, token, name string) string {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(`{"event": {"name": "`+name+`"}}`)))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err.Error()
	}
	var inv struct {
		InvocationID string `json:"invocation_id"`
		Result       string `json:"result"`
		Logs         string `json:"logs"`
	}
	if err := json.Unmarshal(body, &inv); err != nil || resp.StatusCode != 200 {
		return fmt.Sprintf("%s: %d %.200s", name, resp.StatusCode, body)
	}
	quoted := strconv.Quote(name)
	switch {
	case !strings.Contains(inv.Result, "Hello, "+name+"!"):
		return fmt.Sprintf("%s: result %q", name, inv.Result)
	case !strings.Contains(inv.Logs, quoted) || strings.Count(inv.Logs, "\n") != 1:
		return fmt.Sprintf("%s: logs %q", name, inv.Logs)
	}
	return ""
}
