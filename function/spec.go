package function

import (
	"maps"
	"time"
)

// Bounds and defaults of a function's settings.
const (
	DefaultTimeout = 30  // seconds
	MaxTimeout     = 900 // seconds, as Lambda's 15 minutes

	DefaultMemoryMB = 256 // as OpenFaaS and Fn
	MinMemoryMB     = 16
	MaxMemoryMB     = 16384

	MaxCPUs = 64

	// DefaultPooledCPUs is the CPU quota of a hot or lambda container
	// whose function sets no cpus: one event at a time needs one core, and
	// runtimes that size themselves from the quota (Go 1.25 and later,
	// Java, .NET) then keep one busy thread instead of one per core of the
	// machine, idling expensively between events.
	DefaultPooledCPUs = 1.0

	// DefaultPoolSize bounds the pool of long-lived containers of a
	// function that sets no concurrency of its own; calls past it wait for
	// a container instead of being refused.
	DefaultPoolSize = 4
	MaxConcurrency  = 1000

	// MaxMaxAttempts bounds a function's max_attempts; zero means the
	// server's default.
	MaxMaxAttempts = 10

	MaxEnv      = 256
	MaxEnvValue = 32 << 10

	// DefaultNetwork is the network of a function that names none.
	DefaultNetwork = "bridge"
)

// Spec is what a user registers: the image and its settings. Its JSON is
// the API's and the event log's.
type Spec struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Timeout     int               `json:"timeout,omitempty"` // seconds
	MemoryMB    int               `json:"memory_mb,omitempty"`
	CPUs        float64           `json:"cpus,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Mode        Mode              `json:"mode,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
	Network     string            `json:"network,omitempty"`
	// ReadOnly runs the function with a read-only root filesystem and a
	// tmpfs on /tmp.
	ReadOnly bool `json:"read_only,omitempty"`
	// MaxAttempts bounds the attempts of an async invocation.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// CallbackURL receives the record of each async invocation that ends.
	CallbackURL string `json:"callback_url,omitempty"`
	// MaxEventAge, in seconds, bounds how long an async invocation may
	// wait and be retried: 0 is the server's --max-event-age.
	MaxEventAge int `json:"max_event_age,omitempty"`
	// Destinations receive the record of each async invocation that
	// ends, as Lambda's OnSuccess and OnFailure.
	Destinations *Destinations `json:"destinations,omitempty"`
	// Handler is a lambda function's _HANDLER: which handler its runtime
	// runs, in the runtime's own terms.
	Handler string `json:"handler,omitempty"`
	// Entrypoint, Command and WorkingDir replace the image's own when set
	// (Lambda's ImageConfig).
	Entrypoint []string `json:"entrypoint,omitempty"`
	Command    []string `json:"command,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// Description and Role are kept for the user's and for Lambda API
	// clients' sake; the platform does nothing with them.
	Description string `json:"description,omitempty"`
	Role        string `json:"role,omitempty"`
	// HTTPTrigger, when set, lets requests to /hooks/{function} invoke it.
	HTTPTrigger *HTTPTrigger `json:"http_trigger,omitempty"`
	// Package, for a function deployed as a zip archive, is what its
	// image was built from; the server sets it, never the user.
	Package *Package `json:"package,omitempty"`
}

// Normalize checks a spec and fills in its defaults. Errors wrap
// ErrInvalid and say what to change. Whether the callback URL's host is
// allowed is the operator's setting, which the runner checks.
func Normalize(s Spec) (Spec, error) {
	if err := CheckName(s.Name); err != nil {
		return s, invalidErr(err)
	}
	if err := CheckImage(s.Image); err != nil {
		return s, invalidErr(err)
	}
	switch {
	case s.Timeout == 0:
		s.Timeout = DefaultTimeout
	case s.Timeout < 0 || s.Timeout > MaxTimeout:
		return s, InvalidField("timeout", "timeout must be between 1 and %d seconds, got %d", MaxTimeout, s.Timeout)
	}
	switch {
	case s.MemoryMB == 0:
		s.MemoryMB = DefaultMemoryMB
	default:
		if err := CheckMemory(s.MemoryMB); err != nil {
			return s, invalidErr(err)
		}
	}
	if s.CPUs < 0 || s.CPUs > MaxCPUs || s.CPUs != s.CPUs {
		return s, InvalidField("cpus", "cpus must be between 0 (no limit) and %d, got %v", MaxCPUs, s.CPUs)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > MaxMaxAttempts {
		return s, InvalidField("max_attempts", "max_attempts must be between 1 and %d (0: the server's default), got %d", MaxMaxAttempts, s.MaxAttempts)
	}
	if s.MaxEventAge != 0 && (s.MaxEventAge < MinMaxEventAge || s.MaxEventAge > MaxMaxEventAge) {
		return s, InvalidField("max_event_age", "max_event_age must be between %d and %d seconds (0: the server's default), got %d", MinMaxEventAge, MaxMaxEventAge, s.MaxEventAge)
	}
	if d := s.Destinations; d != nil {
		if d.OnSuccess == "" && d.OnFailure == "" {
			s.Destinations = nil
		} else if err := checkDestinations(d); err != nil {
			return s, invalidErr(err)
		} else {
			c := *d
			s.Destinations = &c
		}
	}
	if s.Concurrency < 0 || s.Concurrency > MaxConcurrency {
		return s, InvalidField("concurrency", "concurrency must be between 0 (no limit of its own) and %d, got %d", MaxConcurrency, s.Concurrency)
	}
	switch s.Mode {
	case "", ModeCold:
		s.Mode = ModeCold
	case ModeHot, ModeLambda:
	default:
		return s, InvalidField("mode", `mode must be "cold" (a fresh container per invocation), "hot" (long-lived containers, one event per line) `+
			`or "lambda" (long-lived containers speaking the AWS Lambda Runtime API), got %q`, s.Mode)
	}
	if s.Handler != "" && s.Mode != ModeLambda {
		return s, InvalidField("handler", `handler is a setting of lambda functions ("mode": "lambda")`)
	}
	if err := CheckHandler(s.Handler); err != nil {
		return s, invalidErr(err)
	}
	if err := checkImageConfig(s.Entrypoint, s.Command, s.WorkingDir); err != nil {
		return s, invalidErr(err)
	}
	if err := CheckDescription(s.Description); err != nil {
		return s, invalidErr(err)
	}
	if len(s.Role) > MaxRoleLen {
		return s, InvalidField("role", "role is %d characters; at most %d", len(s.Role), MaxRoleLen)
	}
	if s.HTTPTrigger != nil {
		t := *s.HTTPTrigger
		if err := normalizeTrigger(&t); err != nil {
			return s, invalidErr(err)
		}
		s.HTTPTrigger = &t
	}
	if p := s.Package; p != nil {
		if s.Mode != ModeLambda {
			return s, InvalidField("mode", `a function deployed as a zip package runs in lambda mode ("mode": "lambda")`)
		}
		if p.Runtime == "" || p.BaseImage == "" || p.CodeSha256 == "" {
			return s, InvalidField("runtime", "a zip package needs its runtime, base image and code hash")
		}
		if s.Handler == "" {
			return s, InvalidField("handler", "a zip package needs a handler (for provided runtimes, bootstrap)")
		}
	}
	if s.Mode == ModeLambda {
		for k := range s.Env {
			if IsReservedLambdaEnv(k) {
				return s, InvalidField("env", "env variable %s is set by the platform for lambda functions and cannot be set", k)
			}
		}
	}
	if s.Network == "" {
		s.Network = DefaultNetwork
	} else if err := CheckNetwork(s.Network); err != nil {
		return s, invalidErr(err)
	}
	if err := CheckEnv(s.Env); err != nil {
		return s, invalidErr(err)
	}
	if len(s.Env) == 0 {
		s.Env = nil
	} else {
		s.Env = maps.Clone(s.Env)
	}
	if err := CheckCallbackURL(s.CallbackURL); err != nil {
		return s, invalidErr(err)
	}
	return s, nil
}

// TimeoutFor is how long an invocation of the function may run when it
// asks for seconds (zero: the function's own timeout). Functions imported
// from the legacy file have no timeout of their own and get the default.
func (s Spec) TimeoutFor(seconds int) time.Duration {
	if seconds == 0 {
		seconds = s.Timeout
	}
	if seconds == 0 {
		seconds = DefaultTimeout
	}
	return time.Duration(seconds) * time.Second
}

// RunCommand is the command its containers run with: its own Command,
// or, for a zip package on a runtime other than an OS-only one, the
// handler, which AWS's base images take as their command.
func (s Spec) RunCommand() []string {
	if len(s.Command) == 0 && s.Package != nil && !ProvidedRuntime(s.Package.Runtime) && s.Handler != "" {
		return []string{s.Handler}
	}
	return s.Command
}

// Hot reports whether the function runs in hot mode.
func (s Spec) Hot() bool { return s.Mode == ModeHot }

// Lambda reports whether the function runs in lambda mode.
func (s Spec) Lambda() bool { return s.Mode == ModeLambda }

// Pooled reports whether the function keeps long-lived containers, each
// taking one invocation at a time: hot and lambda functions.
func (s Spec) Pooled() bool { return s.Mode == ModeHot || s.Mode == ModeLambda }

// Patch is a change to a function: the fields that are set replace the
// function's, the others stay.
type Patch struct {
	Name        *string            `json:"name"`
	Image       *string            `json:"image"`
	Timeout     *int               `json:"timeout"`
	MemoryMB    *int               `json:"memory_mb"`
	CPUs        *float64           `json:"cpus"`
	Env         *map[string]string `json:"env"`
	Mode        *Mode              `json:"mode"`
	Concurrency *int               `json:"concurrency"`
	Network     *string            `json:"network"`
	MaxAttempts *int               `json:"max_attempts"`
	ReadOnly    *bool              `json:"read_only"`
	CallbackURL *string            `json:"callback_url"`
	// MaxEventAge and Destinations, as the Spec's; destinations with
	// neither set remove them.
	MaxEventAge  *int          `json:"max_event_age"`
	Destinations *Destinations `json:"destinations"`
	Handler      *string       `json:"handler"`
	Entrypoint   *[]string     `json:"entrypoint"`
	Command      *[]string     `json:"command"`
	WorkingDir   *string       `json:"working_dir"`
	Description  *string       `json:"description"`
	Role         *string       `json:"role"`
	// HTTPTrigger replaces the trigger; an empty object's auth is the
	// default, and null (in JSON) cannot be told from absent, so
	// {"auth": "off"} is how a patch removes one.
	HTTPTrigger *HTTPTrigger `json:"http_trigger"`
}

// Apply returns s with the patch's fields in place; the caller normalizes
// the result.
func (p Patch) Apply(s Spec) Spec {
	// Another image is no longer the package's build.
	if p.Image != nil && *p.Image != s.Image {
		s.Package = nil
	}
	set(&s.Name, p.Name)
	set(&s.Image, p.Image)
	set(&s.Timeout, p.Timeout)
	set(&s.MemoryMB, p.MemoryMB)
	set(&s.CPUs, p.CPUs)
	set(&s.Env, p.Env)
	set(&s.Mode, p.Mode)
	set(&s.Concurrency, p.Concurrency)
	set(&s.Network, p.Network)
	set(&s.MaxAttempts, p.MaxAttempts)
	set(&s.ReadOnly, p.ReadOnly)
	set(&s.CallbackURL, p.CallbackURL)
	set(&s.MaxEventAge, p.MaxEventAge)
	if p.Destinations != nil {
		c := *p.Destinations
		s.Destinations = &c
	}
	set(&s.Handler, p.Handler)
	set(&s.Entrypoint, p.Entrypoint)
	set(&s.Command, p.Command)
	set(&s.WorkingDir, p.WorkingDir)
	set(&s.Description, p.Description)
	set(&s.Role, p.Role)
	if t := p.HTTPTrigger; t != nil {
		switch {
		case t.Auth == "off":
			s.HTTPTrigger = nil
		case t.Auth == TriggerAuthHMAC && t.HMACSecret == "" && s.HTTPTrigger != nil && s.HTTPTrigger.Auth == TriggerAuthHMAC:
			// The secret is write-only: a patch that does not give it
			// again keeps it.
			c := *t
			c.HMACSecret = s.HTTPTrigger.HMACSecret
			s.HTTPTrigger = &c
		default:
			c := *t
			s.HTTPTrigger = &c
		}
	}
	return s
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// ContainerCPUs is the CPU quota a container of s runs with: its cpus, or,
// when it sets none, pooled for a hot or lambda function (0: no quota)
// and no quota for a cold one.
func (s Spec) ContainerCPUs(pooled float64) float64 {
	if s.CPUs > 0 || (s.Mode != ModeHot && s.Mode != ModeLambda) {
		return s.CPUs
	}
	return pooled
}
