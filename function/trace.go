package function

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// MaxTraceIDLen bounds a trace id a caller gives.
const MaxTraceIDLen = 128

// NewTraceID returns a fresh W3C trace id: 32 lower-case hex digits.
func NewTraceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TraceFromHeaders picks an invocation's trace id from its request: the
// trace id of a W3C traceparent, or else X-Request-ID, or else a
// traceparent that is not W3C's but a plain id (as some clients send),
// or "" when none is usable.
func TraceFromHeaders(traceparent, requestID string) string {
	if id, ok := w3cTraceID(traceparent); ok {
		return id
	}
	for _, v := range []string{requestID, traceparent} {
		if v = strings.TrimSpace(v); CheckTraceID(v) == nil {
			return v
		}
	}
	return ""
}

// w3cTraceID is the trace id of a traceparent header:
// version-traceid-parentid-flags, 00-<32 hex>-<16 hex>-<2 hex>.
func w3cTraceID(h string) (string, bool) {
	f := strings.Split(strings.TrimSpace(h), "-")
	if len(f) < 4 || len(f[0]) != 2 || len(f[1]) != 32 || len(f[2]) != 16 || len(f[3]) != 2 || f[0] == "ff" {
		return "", false
	}
	for _, part := range f[:4] {
		if _, err := hex.DecodeString(part); err != nil || strings.ToLower(part) != part {
			return "", false
		}
	}
	if strings.Trim(f[1], "0") == "" {
		return "", false
	}
	return f[1], true
}

// CheckTraceID says what is wrong with a trace id, or returns nil: 1 to
// 128 visible ASCII characters.
func CheckTraceID(id string) error {
	if id == "" || len(id) > MaxTraceIDLen {
		return fmt.Errorf("trace id must be 1 to %d characters", MaxTraceIDLen)
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("trace id %.40q has a character that is not visible ASCII", id)
		}
	}
	return nil
}

// XRayTraceHeader is the trace id as Lambda's runtimes expect it in
// Lambda-Runtime-Trace-Id: a W3C id in X-Ray's form, any other id as Root.
func XRayTraceHeader(id string) string {
	if len(id) == 32 {
		if _, err := hex.DecodeString(id); err == nil {
			return "Root=1-" + id[:8] + "-" + id[8:] + ";Sampled=0"
		}
	}
	return "Root=" + id + ";Sampled=0"
}
