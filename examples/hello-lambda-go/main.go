// Command hello-lambda-go is a function written for AWS Lambda with
// aws-lambda-go, unchanged: Mini Lambda runs it with "mode": "lambda".
// Build it FROM scratch:
//
//	CGO_ENABLED=0 go build -o examples/hello-lambda-go/bootstrap ./examples/hello-lambda-go
//	docker build -t hello-lambda examples/hello-lambda-go
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Name string `json:"name"`
}

type answer struct {
	Message string `json:"message"`
}

func handle(ctx context.Context, e event) (answer, error) {
	if e.Name == "" {
		e.Name = "World"
	}
	lc, _ := lambdacontext.FromContext(ctx)
	// Whatever the handler writes is its invocation's logs.
	fmt.Fprintf(os.Stderr, "hello-lambda-go: greeting %q in %s\n", e.Name, lc.AwsRequestID)
	return answer{Message: "Hello, " + e.Name + "!"}, nil
}

func main() {
	lambda.Start(handle)
}
