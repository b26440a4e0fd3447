// Command lambdago is a function written for AWS Lambda with
// aws-lambda-go, as anyone writes one, for the tests of lambda mode: what
// it does is steered by its event. It counts the events its process has
// handled, so that a test can tell a warm call from a cold one.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Name    string `json:"name"`
	Error   string `json:"error"`
	Panic   string `json:"panic"`
	Exit    int    `json:"exit"`
	SleepMS int    `json:"sleep_ms"`
	// LogBytes writes this many bytes of logs, half to stdout, half to
	// stderr.
	LogBytes int `json:"log_bytes"`
	// Echo answers with a string of this many bytes.
	Echo int `json:"echo"`
	// AllocMB allocates and touches this much memory.
	AllocMB int `json:"alloc_mb"`
}

type answer struct {
	Message     string            `json:"message"`
	Count       int64             `json:"count"`
	Pid         int               `json:"pid"`
	RequestID   string            `json:"request_id"`
	FunctionARN string            `json:"function_arn"`
	DeadlineMS  int64             `json:"deadline_ms"`
	Env         map[string]string `json:"env"`
	Echo        string            `json:"echo,omitempty"`
	Build       string            `json:"build,omitempty"`
}

var count atomic.Int64

// build tells two builds of this function apart: go build -ldflags
// "-X main.build=NAME".
var build string

func handle(ctx context.Context, e event) (answer, error) {
	n := count.Add(1)
	lc, _ := lambdacontext.FromContext(ctx)
	fmt.Printf("handling %q (stdout)\n", e.Name)
	fmt.Fprintf(os.Stderr, "handling %q (stderr)\n", e.Name)
	if e.LogBytes > 0 {
		os.Stdout.WriteString(strings.Repeat("o", e.LogBytes/2))
		os.Stderr.WriteString(strings.Repeat("e", e.LogBytes-e.LogBytes/2))
	}
	if e.AllocMB > 0 {
		var keep [][]byte
		for range e.AllocMB {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep), "MiB")
	}
	time.Sleep(time.Duration(e.SleepMS) * time.Millisecond)
	switch {
	case e.Exit != 0:
		os.Exit(e.Exit)
	case e.Panic != "":
		panic(e.Panic)
	case e.Error != "":
		return answer{}, errors.New(e.Error)
	}
	deadline, _ := ctx.Deadline()
	env := map[string]string{}
	for _, k := range []string{
		"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
		"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
		"_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ", "AWS_LAMBDA_RUNTIME_API", "OWN", "_X_AMZN_TRACE_ID",
	} {
		env[k] = os.Getenv(k)
	}
	return answer{
		Message: fmt.Sprintf("Hello, %s!", e.Name), Count: n, Pid: os.Getpid(), Build: build,
		RequestID: lc.AwsRequestID, FunctionARN: lc.InvokedFunctionArn, DeadlineMS: deadline.UnixMilli(),
		Env: env, Echo: strings.Repeat("x", e.Echo),
	}, nil
}

func main() {
	fmt.Fprintln(os.Stderr, "lambdago: starting")
	lambda.Start(handle)
}
