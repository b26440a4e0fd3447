package function

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// invalid returns an error wrapping ErrInvalid with the message given.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// FieldError is a mistake in one setting of a request. Field names the
// setting as the API spells it, the path of its JSON member ("timeout",
// "env", "http_trigger.hmac_secret"); Err says what is wrong. Each rule
// makes its own where it lives, and the errors that wrap ErrInvalid keep
// it: errors.As finds it, and the API answers with its field.
type FieldError struct {
	Field string
	Err   error
}

// Error is what is wrong with the setting.
func (e *FieldError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr returns a FieldError about field with the message given.
func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// InvalidField returns an error wrapping ErrInvalid and a FieldError
// about field, with the message given: a rule outside this package that
// a setting breaks (an image the engine does not have) says it so.
func InvalidField(field, format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalid, fieldErr(field, format, args...))
}

// invalidErr wraps ErrInvalid around err, a Check function's, keeping
// the FieldError in it.
func invalidErr(err error) error {
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// The Check functions below say what is wrong in words a user can act on,
// without wrapping ErrInvalid: the caller decides what the mistake is to
// it (a bad request, a bad legacy file, a bad container spec). Those of a
// setting return a FieldError naming it.

// MaxNameLen is the longest function name; MaxIDLen the longest id.
const (
	MaxNameLen = 64
	MaxIDLen   = 128
)

// nameChar reports whether r may appear in a function name or an id:
// letters, digits, '_', '.' and '-'.
func nameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.' || r == '-'
}

// Bounds of an image's command line and of a role.
const (
	MaxCommandArgs = 1500
	MaxCommandLen  = 32 << 10
	MaxRoleLen     = 2048
)

// checkImageConfig says what is wrong with an entrypoint, a command and a
// working directory that replace an image's, or returns nil.
func checkImageConfig(entrypoint, command []string, dir string) error {
	n := len(dir)
	for i, args := range [][]string{entrypoint, command} {
		field := [...]string{"entrypoint", "command"}[i]
		if len(args) > MaxCommandArgs {
			return fieldErr(field, "at most %d arguments in an entrypoint or a command", MaxCommandArgs)
		}
		for _, a := range args {
			if strings.ContainsRune(a, 0) {
				return fieldErr(field, "an entrypoint or command argument holds a NUL byte")
			}
			n += len(a)
		}
	}
	if n > MaxCommandLen {
		return fmt.Errorf("entrypoint, command and working_dir are %d bytes together; at most %d", n, MaxCommandLen)
	}
	if dir != "" && !strings.HasPrefix(dir, "/") {
		return fieldErr("working_dir", "working_dir %.40q must be an absolute path", dir)
	}
	return nil
}

// CheckName says what is wrong with a function name, or returns nil.
// Names are 1 to 64 of A-Z a-z 0-9 _ . -
func CheckName(name string) error {
	if name == "" {
		return fieldErr("name", "name is empty")
	}
	if len(name) > MaxNameLen {
		return fieldErr("name", "name %.20q... is %d characters; at most %d", name, len(name), MaxNameLen)
	}
	for _, r := range name {
		if !nameChar(r) {
			return fieldErr("name", "name %q has %q: use only letters, digits, '_', '.' and '-'", name, r)
		}
	}
	return nil
}

// CheckID says what is wrong with an id (of a function or an invocation),
// or returns nil. Ids are 1 to 128 of the characters names may have, so
// that a function's id or name fits the same place in a path.
func CheckID(id string) error {
	if id == "" {
		return fmt.Errorf("id is empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("id is longer than %d characters", MaxIDLen)
	}
	for _, r := range id {
		if !nameChar(r) {
			return fmt.Errorf("id %q has %q: use only letters, digits, '_', '.' and '-'", id, r)
		}
	}
	return nil
}

// CheckImage accepts what `docker run` accepts: a reference in Docker's
// grammar (name, tag, digest) or an image ID.
func CheckImage(image string) error {
	if image == "" {
		return fieldErr("image", "image is empty")
	}
	if len(image) > 512 {
		return fieldErr("image", "image reference is longer than 512 characters")
	}
	if _, err := reference.ParseAnyReference(image); err != nil {
		return fieldErr("image", "image %q is not a valid image reference: %v", image, err)
	}
	return nil
}

// CheckMemory refuses a memory limit out of bounds.
func CheckMemory(mb int) error {
	if mb < MinMemoryMB || mb > MaxMemoryMB {
		return fieldErr("memory_mb", "memory_mb must be between %d and %d, got %d", MinMemoryMB, MaxMemoryMB, mb)
	}
	return nil
}

var (
	envKey      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// CheckNetwork accepts "bridge", "none" and the names of user-defined
// networks; "host" and "container:..." would share the host's or another
// container's network and are refused.
func CheckNetwork(network string) error {
	switch {
	case network == "host" || strings.HasPrefix(network, "container:"):
		return fieldErr("network", `network %q would share the host's or another container's network; use "bridge", "none" or a user-defined network`, network)
	case !networkName.MatchString(network):
		return fieldErr("network", "network %q is not a network name", network)
	}
	return nil
}

// CheckEnv checks the names and values of environment variables.
func CheckEnv(env map[string]string) error {
	if len(env) > MaxEnv {
		return fieldErr("env", "env has %d variables; at most %d", len(env), MaxEnv)
	}
	for k, v := range env {
		if !envKey.MatchString(k) {
			return fieldErr("env", "env variable name %q: use letters, digits and '_', not starting with a digit", k)
		}
		if len(v) > MaxEnvValue || strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return fieldErr("env", "env variable %s: the value must be UTF-8 text without NUL, at most %d bytes", k, MaxEnvValue)
		}
	}
	return nil
}

// CheckCallbackURL accepts an empty URL, or an http(s) URL with a host and
// no user info. Which hosts callbacks may go to is the operator's choice,
// checked where callbacks are sent.
func CheckCallbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fieldErr("callback_url", "callback_url %q must be an http or https URL", raw)
	}
	return nil
}

// MaxHandlerLen is the longest handler, as Lambda's.
const MaxHandlerLen = 128

// CheckHandler accepts an empty handler, or up to 128 characters of
// printable text without spaces, as Lambda does.
func CheckHandler(h string) error {
	if len(h) > MaxHandlerLen {
		return fieldErr("handler", "handler is longer than %d characters", MaxHandlerLen)
	}
	for _, r := range h {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fieldErr("handler", "handler %q has %q: no spaces or control characters", h, r)
		}
	}
	return nil
}

// reservedLambdaEnv is the environment the platform sets in every lambda
// container, which a function's env may not set: Lambda reserves the same
// names.
var reservedLambdaEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_REGION": true, "AWS_DEFAULT_REGION": true,
	"AWS_EXECUTION_ENV": true, "AWS_LAMBDA_FUNCTION_NAME": true, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION": true, "AWS_LAMBDA_INITIALIZATION_TYPE": true, "AWS_LAMBDA_LOG_GROUP_NAME": true,
	"AWS_LAMBDA_LOG_STREAM_NAME": true, "AWS_LAMBDA_RUNTIME_API": true, "LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true,
}

// IsReservedLambdaEnv reports whether a lambda function's env may not set
// the variable name.
func IsReservedLambdaEnv(name string) bool { return reservedLambdaEnv[name] }
