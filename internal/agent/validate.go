package agent

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/minilambda/minilambda/internal/names"
	"github.com/minilambda/minilambda/projections"
)

// Bounds and defaults of a function's settings.
const (
	DefaultTimeout  = 30  // seconds
	DefaultMemoryMB = 256 // as OpenFaaS and Fn
	MinMemoryMB     = 16
	MaxMemoryMB     = 16384
	MaxCPUs         = 64
	MaxConcurrency  = 1000
	MaxEnv          = 256
	MaxEnvValue     = 32 << 10
)

var (
	envKey      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// Normalize checks a function spec and fills in its defaults. Errors wrap
// ErrInvalid and say what to change.
func Normalize(s projections.FunctionSpec) (projections.FunctionSpec, error) {
	bad := func(format string, args ...any) (projections.FunctionSpec, error) {
		return s, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if err := names.Check(s.Name); err != nil {
		return bad("%v", err)
	}
	if err := checkImage(s.Image); err != nil {
		return bad("%v", err)
	}
	switch {
	case s.Timeout == 0:
		s.Timeout = DefaultTimeout
	case s.Timeout < 0 || s.Timeout > MaxTimeout:
		return bad("timeout must be between 1 and %d seconds, got %d", MaxTimeout, s.Timeout)
	}
	switch {
	case s.MemoryMB == 0:
		s.MemoryMB = DefaultMemoryMB
	case s.MemoryMB < MinMemoryMB || s.MemoryMB > MaxMemoryMB:
		return bad("memory_mb must be between %d and %d, got %d", MinMemoryMB, MaxMemoryMB, s.MemoryMB)
	}
	if s.CPUs < 0 || s.CPUs > MaxCPUs || s.CPUs != s.CPUs {
		return bad("cpus must be between 0 (no limit) and %d, got %v", MaxCPUs, s.CPUs)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > MaxMaxAttempts {
		return bad("max_attempts must be between 1 and %d (0: the server's default), got %d", MaxMaxAttempts, s.MaxAttempts)
	}
	if s.Concurrency < 0 || s.Concurrency > MaxConcurrency {
		return bad("concurrency must be between 0 (no limit of its own) and %d, got %d", MaxConcurrency, s.Concurrency)
	}
	switch s.Mode {
	case "", "cold":
		s.Mode = "cold"
	case "hot":
		if s.Concurrency == 0 {
			s.Concurrency = DefaultHotConcurrency
		}
	default:
		return bad(`mode must be "cold" (a fresh container per invocation) or "hot" (long-lived containers, one event per line), got %q`, s.Mode)
	}
	switch {
	case s.Network == "":
		s.Network = "bridge"
	case s.Network == "host" || strings.HasPrefix(s.Network, "container:"):
		return bad(`network %q would share the host's or another container's network; use "bridge", "none" or a user-defined network`, s.Network)
	case !networkName.MatchString(s.Network):
		return bad("network %q is not a network name", s.Network)
	}
	if len(s.Env) > MaxEnv {
		return bad("env has %d variables; at most %d", len(s.Env), MaxEnv)
	}
	for k, v := range s.Env {
		if !envKey.MatchString(k) {
			return bad("env variable name %q: use letters, digits and '_', not starting with a digit", k)
		}
		if len(v) > MaxEnvValue || strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return bad("env variable %s: the value must be UTF-8 text without NUL, at most %d bytes", k, MaxEnvValue)
		}
	}
	if len(s.Env) == 0 {
		s.Env = nil
	} else {
		s.Env = maps.Clone(s.Env)
	}
	return s, nil
}

// checkImage accepts what `docker run` accepts: a reference in Docker's
// grammar (name, tag, digest) or an image ID.
func checkImage(image string) error {
	if image == "" {
		return fmt.Errorf("image is empty")
	}
	if len(image) > 512 {
		return fmt.Errorf("image reference is longer than 512 characters")
	}
	if _, err := reference.ParseAnyReference(image); err != nil {
		return fmt.Errorf("image %q is not a valid image reference: %v", image, err)
	}
	return nil
}
