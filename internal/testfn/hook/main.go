// Command hook is a test function for HTTP triggers: it reads the event a
// hook makes of a request from stdin and answers in the function URL
// response form, echoing what it saw, so that a test can check both ways.
// A body of "fail" makes it exit 1; "plain" makes it answer a bare string;
// "binary" a base64-encoded body. X-Trace-Env answers the TRACE_ID it was
// started with.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

type event struct {
	Version               string            `json:"version"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters"`
	RequestContext        struct {
		HTTP struct {
			Method   string `json:"method"`
			Path     string `json:"path"`
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
		RequestID string `json:"requestId"`
		TimeEpoch int64  `json:"timeEpoch"`
	} `json:"requestContext"`
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
}

func main() {
	var e event
	if err := json.NewDecoder(os.Stdin).Decode(&e); err != nil {
		fmt.Fprintln(os.Stderr, "hook: bad event:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "hook: %s %s\n", e.RequestContext.HTTP.Method, e.RawPath)
	switch e.Body {
	case "fail":
		fmt.Fprintln(os.Stderr, "hook: failing on purpose, secret internals here")
		os.Exit(1)
	case "plain":
		fmt.Print(`"just a string"`)
		return
	case "binary":
		json.NewEncoder(os.Stdout).Encode(map[string]any{"statusCode": 200, "body": "AAEC/w==", "isBase64Encoded": true,
			"headers": map[string]string{"Content-Type": "application/octet-stream"}})
		return
	}
	seen, _ := json.Marshal(e)
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"statusCode": 201,
		"headers": map[string]string{"X-Echo-Method": e.RequestContext.HTTP.Method, "Content-Type": "application/json",
			"X-Trace-Env": os.Getenv("TRACE_ID")},
		"cookies": []string{"seen=1; Path=/"},
		"body":    string(seen),
	})
}
