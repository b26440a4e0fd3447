package function_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
)

// fieldOf is the setting err is about, as the API names it, or "".
func fieldOf(t *testing.T, err error) string {
	t.Helper()
	if !errors.Is(err, function.ErrInvalid) {
		t.Fatalf("%v does not wrap ErrInvalid", err)
	}
	var fe *function.FieldError
	if !errors.As(err, &fe) {
		return ""
	}
	if !strings.HasSuffix(err.Error(), fe.Error()) {
		t.Errorf("%q does not end in its field's message %q", err, fe)
	}
	return fe.Field
}

// Each rule's error names the setting it is about, by its JSON member.
func TestRulesNameTheirField(t *testing.T) {
	ok := function.Spec{Name: "fn", Image: "fn:1"}
	for _, tc := range []struct {
		field  string
		change func(*function.Spec)
	}{
		{"name", func(s *function.Spec) { s.Name = "has space" }},
		{"image", func(s *function.Spec) { s.Image = "" }},
		{"timeout", func(s *function.Spec) { s.Timeout = function.MaxTimeout + 1 }},
		{"memory_mb", func(s *function.Spec) { s.MemoryMB = 1 }},
		{"cpus", func(s *function.Spec) { s.CPUs = -1 }},
		{"max_attempts", func(s *function.Spec) { s.MaxAttempts = -1 }},
		{"concurrency", func(s *function.Spec) { s.Concurrency = -1 }},
		{"mode", func(s *function.Spec) { s.Mode = "warm" }},
		{"handler", func(s *function.Spec) { s.Handler = "app.handler" }},
		{"handler", func(s *function.Spec) { s.Mode, s.Handler = function.ModeLambda, "has space" }},
		{"entrypoint", func(s *function.Spec) { s.Entrypoint = []string{"a\x00"} }},
		{"command", func(s *function.Spec) { s.Command = make([]string, function.MaxCommandArgs+1) }},
		{"working_dir", func(s *function.Spec) { s.WorkingDir = "relative" }},
		{"description", func(s *function.Spec) { s.Description = strings.Repeat("d", function.MaxDescriptionLen+1) }},
		{"role", func(s *function.Spec) { s.Role = strings.Repeat("r", function.MaxRoleLen+1) }},
		{"http_trigger.auth", func(s *function.Spec) { s.HTTPTrigger = &function.HTTPTrigger{Auth: "basic"} }},
		{"http_trigger.hmac_secret", func(s *function.Spec) {
			s.HTTPTrigger = &function.HTTPTrigger{Auth: function.TriggerAuthHMAC, HMACSecret: "short"}
		}},
		{"http_trigger.hmac_secret", func(s *function.Spec) { s.HTTPTrigger = &function.HTTPTrigger{HMACSecret: strings.Repeat("s", 16)} }},
		{"http_trigger.hmac_header", func(s *function.Spec) {
			s.HTTPTrigger = &function.HTTPTrigger{Auth: function.TriggerAuthHMAC, HMACSecret: strings.Repeat("s", 16), HMACHeader: "X Sig"}
		}},
		{"env", func(s *function.Spec) { s.Env = map[string]string{"1BAD": "x"} }},
		{"env", func(s *function.Spec) { s.Mode, s.Env = function.ModeLambda, map[string]string{"AWS_REGION": "x"} }},
		{"network", func(s *function.Spec) { s.Network = "host" }},
		{"callback_url", func(s *function.Spec) { s.CallbackURL = "ftp://x" }},
		// Two settings together: no one field.
		{"", func(s *function.Spec) {
			s.Entrypoint, s.WorkingDir = []string{strings.Repeat("a", function.MaxCommandLen)}, "/w"
		}},
	} {
		s := ok
		tc.change(&s)
		_, err := function.Normalize(s)
		if err == nil {
			t.Errorf("%s: %+v was accepted", tc.field, s)
			continue
		}
		if got := fieldOf(t, err); got != tc.field {
			t.Errorf("%q names field %q, want %q", err, got, tc.field)
		}
	}

	for _, tc := range []struct {
		field string
		err   error
	}{
		{"cron", func() error { _, err := function.ScheduleSpec{Cron: "TZ=UTC * * * * *"}.Normalize(); return err }()},
		{"cron", func() error { _, err := function.ScheduleSpec{Cron: "nonsense"}.Normalize(); return err }()},
		{"timezone", func() error {
			_, err := function.ScheduleSpec{Cron: "@daily", Timezone: "Mars/Olympus"}.Normalize()
			return err
		}()},
		{"missed", func() error { _, err := function.ScheduleSpec{Cron: "@daily", Missed: "all"}.Normalize(); return err }()},
		{"event", func() error {
			_, err := function.ScheduleSpec{Cron: "@daily", Event: json.RawMessage("{")}.Normalize()
			return err
		}()},
		{"function_version", function.AliasSpec{FunctionVersion: "x"}.Check()},
		{"additional_version_weights", function.AliasSpec{FunctionVersion: "1", Weights: map[string]float64{"2": 2}}.Check()},
		{"description", function.AliasSpec{FunctionVersion: "1", Description: strings.Repeat("d", function.MaxDescriptionLen+1)}.Check()},
		{"description", function.Publish{Description: strings.Repeat("d", function.MaxDescriptionLen+1)}.Check()},
		{"timeout", func() error { _, err := function.Request{Timeout: -1}.Check(); return err }()},
	} {
		if tc.err == nil {
			t.Errorf("%s: accepted", tc.field)
			continue
		}
		if got := fieldOf(t, tc.err); got != tc.field {
			t.Errorf("%q names field %q, want %q", tc.err, got, tc.field)
		}
	}
}
