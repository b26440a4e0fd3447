package function_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
)

func TestNormalizeDefaults(t *testing.T) {
	s, err := function.Normalize(function.Spec{Name: "hello", Image: "hello:1", Env: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := function.Spec{
		Name: "hello", Image: "hello:1", Timeout: function.DefaultTimeout, MemoryMB: function.DefaultMemoryMB,
		Mode: function.ModeCold, Network: function.DefaultNetwork,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", s, want)
	}
	hot, err := function.Normalize(function.Spec{Name: "h", Image: "h", Mode: function.ModeHot})
	// No concurrency of its own: calls wait for its pool, none refused.
	if err != nil || hot.Concurrency != 0 || hot.Mode != function.ModeHot {
		t.Errorf("hot defaults: %+v %v", hot, err)
	}
	// Normalizing twice changes nothing: the runner may get a spec the API
	// normalized already.
	again, err := function.Normalize(hot)
	if err != nil || !reflect.DeepEqual(again, hot) {
		t.Errorf("second normalization: %+v %v", again, err)
	}
	// The caller's env map is not shared.
	env := map[string]string{"A": "1"}
	s, _ = function.Normalize(function.Spec{Name: "e", Image: "e", Env: env})
	env["A"] = "2"
	if s.Env["A"] != "1" {
		t.Errorf("Normalize kept the caller's map")
	}
}

func TestNormalizeRefuses(t *testing.T) {
	ok := function.Spec{Name: "fn", Image: "registry.local:5000/team/fn@sha256:" + strings.Repeat("ab", 32)}
	if _, err := function.Normalize(ok); err != nil {
		t.Fatalf("a valid spec: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(*function.Spec)
		says   string
	}{
		"no name":           {func(s *function.Spec) { s.Name = "" }, "name is empty"},
		"long name":         {func(s *function.Spec) { s.Name = strings.Repeat("n", 65) }, "at most 64"},
		"name with space":   {func(s *function.Spec) { s.Name = "has space" }, "letters, digits"},
		"no image":          {func(s *function.Spec) { s.Image = "" }, "image is empty"},
		"bad image":         {func(s *function.Spec) { s.Image = "UPPER/Case:tag" }, "not a valid image reference"},
		"image with space":  {func(s *function.Spec) { s.Image = "a b" }, "not a valid image reference"},
		"bad digest":        {func(s *function.Spec) { s.Image = "a@sha256:zz" }, "not a valid image reference"},
		"long image":        {func(s *function.Spec) { s.Image = strings.Repeat("a", 513) }, "longer than 512"},
		"negative timeout":  {func(s *function.Spec) { s.Timeout = -1 }, "timeout must be between 1 and 900"},
		"huge timeout":      {func(s *function.Spec) { s.Timeout = 901 }, "timeout must be between 1 and 900"},
		"tiny memory":       {func(s *function.Spec) { s.MemoryMB = function.MinMemoryMB - 1 }, "memory_mb must be between 16 and 16384"},
		"huge memory":       {func(s *function.Spec) { s.MemoryMB = function.MaxMemoryMB + 1 }, "memory_mb"},
		"negative cpus":     {func(s *function.Spec) { s.CPUs = -0.5 }, "cpus"},
		"too many cpus":     {func(s *function.Spec) { s.CPUs = 65 }, "cpus"},
		"NaN cpus":          {func(s *function.Spec) { s.CPUs = math.NaN() }, "cpus"},
		"attempts":          {func(s *function.Spec) { s.MaxAttempts = 11 }, "max_attempts"},
		"negative attempts": {func(s *function.Spec) { s.MaxAttempts = -1 }, "max_attempts"},
		"concurrency":       {func(s *function.Spec) { s.Concurrency = 1001 }, "concurrency"},
		"mode":              {func(s *function.Spec) { s.Mode = "warm" }, `mode must be "cold"`},
		"host network":      {func(s *function.Spec) { s.Network = "host" }, "host's or another container's network"},
		"container network": {func(s *function.Spec) { s.Network = "container:abc" }, "host's or another container's network"},
		"bad network":       {func(s *function.Spec) { s.Network = "-x" }, "not a network name"},
		"env key":           {func(s *function.Spec) { s.Env = map[string]string{"1X": "y"} }, "env variable name"},
		"env NUL":           {func(s *function.Spec) { s.Env = map[string]string{"A": "a\x00b"} }, "without NUL"},
		"env not UTF-8":     {func(s *function.Spec) { s.Env = map[string]string{"A": "\xff"} }, "UTF-8"},
		"env value size":    {func(s *function.Spec) { s.Env = map[string]string{"A": strings.Repeat("v", function.MaxEnvValue+1)} }, "at most"},
		"callback scheme":   {func(s *function.Spec) { s.CallbackURL = "ftp://host/x" }, "http or https"},
		"callback user":     {func(s *function.Spec) { s.CallbackURL = "http://u:p@host/x" }, "http or https"},
		"callback no host":  {func(s *function.Spec) { s.CallbackURL = "http:///x" }, "http or https"},
		"handler, cold":     {func(s *function.Spec) { s.Handler = "main.handle" }, "handler is a setting of lambda functions"},
		"handler space":     {func(s *function.Spec) { s.Mode, s.Handler = function.ModeLambda, "main handle" }, "no spaces"},
		"long handler":      {func(s *function.Spec) { s.Mode, s.Handler = function.ModeLambda, strings.Repeat("h", 129) }, "longer than 128"},
		"reserved env": {func(s *function.Spec) {
			s.Mode, s.Env = function.ModeLambda, map[string]string{"AWS_LAMBDA_RUNTIME_API": "elsewhere:80"}
		}, "set by the platform"},
	} {
		s := ok
		tc.change(&s)
		_, err := function.Normalize(s)
		if !errors.Is(err, function.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", name, err, tc.says)
		}
	}
	// What lambda mode reserves is free to the other modes; TZ is free to
	// all.
	for _, mode := range []function.Mode{function.ModeCold, function.ModeHot} {
		if _, err := function.Normalize(function.Spec{Name: "e", Image: "e", Mode: mode, Env: map[string]string{"AWS_REGION": "x"}}); err != nil {
			t.Errorf("%s mode with AWS_REGION: %v", mode, err)
		}
	}
	l, err := function.Normalize(function.Spec{Name: "l", Image: "l", Mode: function.ModeLambda, Handler: "index.handler", Env: map[string]string{"TZ": "UTC"}})
	if err != nil || !l.Lambda() || !l.Pooled() || l.Hot() || l.Concurrency != 0 {
		t.Errorf("a lambda function: %+v %v", l, err)
	}
	many := map[string]string{}
	for i := range function.MaxEnv + 1 {
		many[fmt.Sprintf("V%d", i)] = ""
	}
	if _, err := function.Normalize(function.Spec{Name: "e", Image: "e", Env: many}); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("%d env variables: %v", len(many), err)
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"01J8ZK5ZP0000000000000000A", "5ac94553-cd05-4cc0-b657-acae0c6559e1", "resize.images", strings.Repeat("a", 128)} {
		if err := function.CheckID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("a", 129), "a/b", "a b", "☃"} {
		if err := function.CheckID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
	// Names and ids share their characters: every valid name is a valid id.
	if err := function.CheckName(strings.Repeat("N.-_9", 12)); err != nil {
		t.Errorf("name: %v", err)
	}
}

func TestPatchApply(t *testing.T) {
	base := function.Spec{Name: "a", Image: "i:1", Timeout: 5, Env: map[string]string{"K": "v"}, Mode: function.ModeHot, Concurrency: 2}
	var p function.Patch
	if err := json.Unmarshal([]byte(`{"image": "i:2", "timeout": 7, "read_only": true}`), &p); err != nil {
		t.Fatal(err)
	}
	got := p.Apply(base)
	want := base
	want.Image, want.Timeout, want.ReadOnly = "i:2", 7, true
	if !reflect.DeepEqual(got, want) {
		t.Errorf("patch:\n got %+v\nwant %+v", got, want)
	}
	// Every field of a Spec can be patched, but the package the server
	// sets from an archive.
	all := function.Patch{}
	v := reflect.ValueOf(&all).Elem()
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Pointer {
			t.Fatalf("Patch.%s is not a pointer", v.Type().Field(i).Name)
		}
	}
	if _, ok := reflect.TypeFor[function.Patch]().FieldByName("Package"); ok {
		t.Error("Patch has a Package: it is the server's to set")
	}
	if n, m := reflect.TypeFor[function.Patch]().NumField(), reflect.TypeFor[function.Spec]().NumField(); n != m-1 {
		t.Errorf("Patch has %d fields, Spec %d: one for each but Package", n, m)
	}
}

func TestTimeoutFor(t *testing.T) {
	s := function.Spec{Timeout: 12}
	if got := s.TimeoutFor(0); got != 12*time.Second {
		t.Errorf("the function's: %v", got)
	}
	if got := s.TimeoutFor(3); got != 3*time.Second {
		t.Errorf("the request's: %v", got)
	}
	// A function imported from the legacy file has no timeout of its own.
	if got := (function.Spec{}).TimeoutFor(0); got != function.DefaultTimeout*time.Second {
		t.Errorf("the default: %v", got)
	}
}

func TestRequestCheck(t *testing.T) {
	r, err := function.Request{}.Check()
	if err != nil || string(r.Event) != "{}" {
		t.Errorf("empty request: %q %v", r.Event, err)
	}
	r, err = function.Request{Event: json.RawMessage(`[1]`), Timeout: function.MaxTimeout}.Check()
	if err != nil || string(r.Event) != "[1]" {
		t.Errorf("full request: %q %v", r.Event, err)
	}
	for _, timeout := range []int{-1, function.MaxTimeout + 1} {
		if _, err := (function.Request{Timeout: timeout}).Check(); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("timeout %d: %v", timeout, err)
		}
	}
}
