// Package lambdatest holds what the tests of lambda mode share: the
// custom runtime of AWS's tutorial, and a directory where the
// function containers' init is built once, on first use, and reused: a
// service given it as its runner.Options.InitDir builds the init
// there only if no build of the same source is there yet. The package's
// TestMain removes the directory with Main.
package lambdatest

import (
	"os"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	err  error
)

// InitDir returns the process's directory for builds of the init.
func InitDir(t testing.TB) string {
	t.Helper()
	once.Do(func() { dir, err = os.MkdirTemp("", "minilambda-test-init-") })
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Main runs a test package's tests, then removes the directory: call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// TutorialBootstrap and TutorialFunction are the custom runtime of AWS's
// tutorial ("Building a custom runtime") and its handler, as published,
// in bash and curl, on #!/bin/bash because Debian's /bin/sh has no
// pipefail.
const (
	TutorialBootstrap = `#!/bin/bash
set -euo pipefail

# Initialization - load function handler
source $LAMBDA_TASK_ROOT/"$(echo $_HANDLER | cut -d. -f1).sh"

# Processing
while true
do
  HEADERS="$(mktemp)"
  # Get an event. The HTTP request will block until one is received
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")

  # Extract request ID by scraping response headers received above
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)

  # Run the handler function from the script
  RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA")

  # Send the response
  curl "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response"  -d "$RESPONSE"
done
`
	TutorialFunction = `function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  RESPONSE="Echoing request: '$EVENT_DATA'"

  echo $RESPONSE
}
`
)
