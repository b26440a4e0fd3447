package agent

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"time"
)

// The Runtime API's address inside every container, and where the init and
// the socket are mounted.
const (
	RuntimeAPI = "127.0.0.1:9001"
	initTarget = "/run/minilambda/init"
	apiTarget  = "/run/minilambda/api"
	socketName = "rapi.sock"
)

// DefaultRegion is the region of a server that names none.
const DefaultRegion = "us-east-1"

// Account is the account id in every function's ARN: a server is one
// account of its own.
const Account = "000000000000"

// Function is what a lambda container is told of its function.
type Function struct {
	Name string
	// Version is the published version that runs ("3"), or "$LATEST".
	Version  string
	MemoryMB int
	Handler  string
}

// ARN is the function's ARN in region, as Lambda-Runtime-Invoked-Function-Arn
// gives it.
func ARN(region, name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", region, Account, name)
}

// env is the environment of a new container of f: its own, and over it the
// variables Lambda sets in every execution environment (function.Normalize
// refuses the names it reserves).
func env(own map[string]string, f Function, region string, now time.Time) map[string]string {
	e := make(map[string]string, len(own)+16)
	e["TZ"] = ":UTC"
	maps.Copy(e, own)
	var stream [16]byte
	_, _ = rand.Read(stream[:])
	version := f.Version
	maps.Copy(e, map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          RuntimeAPI,
		"AWS_LAMBDA_FUNCTION_NAME":        f.Name,
		"AWS_LAMBDA_FUNCTION_VERSION":     version,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.MemoryMB),
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      now.UTC().Format("2006/01/02") + "/[" + version + "]" + hex.EncodeToString(stream[:]),
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_REGION":                      region,
		"AWS_DEFAULT_REGION":              region,
		"LAMBDA_TASK_ROOT":                "/var/task",
		"LAMBDA_RUNTIME_DIR":              "/var/runtime",
	})
	if f.Handler != "" {
		e["_HANDLER"] = f.Handler
	}
	return e
}
