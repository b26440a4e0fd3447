package agent_test

import (
	"maps"
	"regexp"
	"testing"
	"time"

	"github.com/minilambda/minilambda/runner/agent"
)

func TestContainerEnv(t *testing.T) {
	for _, tc := range []struct {
		name   string
		region string
		f      agent.Function
		own    map[string]string
		want   map[string]string // besides AWS_LAMBDA_LOG_STREAM_NAME
	}{
		{
			name: "a function with a handler", region: "ap-south-1",
			f:   agent.Function{Name: "resize", Version: "7", MemoryMB: 512, Handler: "index.handler"},
			own: map[string]string{"BUCKET": "photos", "DEBUG": ""},
			want: map[string]string{
				"BUCKET":                          "photos",
				"DEBUG":                           "",
				"TZ":                              ":UTC",
				"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
				"AWS_LAMBDA_FUNCTION_NAME":        "resize",
				"AWS_LAMBDA_FUNCTION_VERSION":     "7",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
				"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/resize",
				"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
				"AWS_REGION":                      "ap-south-1",
				"AWS_DEFAULT_REGION":              "ap-south-1",
				"LAMBDA_TASK_ROOT":                "/var/task",
				"LAMBDA_RUNTIME_DIR":              "/var/runtime",
				"_HANDLER":                        "index.handler",
			},
		},
		{
			name: "no handler, the default region, a time zone of its own",
			f:    agent.Function{Name: "hello", Version: "$LATEST", MemoryMB: 128},
			own:  map[string]string{"TZ": "Europe/Paris"},
			want: map[string]string{
				"TZ":                              "Europe/Paris",
				"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
				"AWS_LAMBDA_FUNCTION_NAME":        "hello",
				"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
				"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/hello",
				"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
				"AWS_REGION":                      "us-east-1",
				"AWS_DEFAULT_REGION":              "us-east-1",
				"LAMBDA_TASK_ROOT":                "/var/task",
				"LAMBDA_RUNTIME_DIR":              "/var/runtime",
			},
		},
		{
			// function.Normalize refuses these names; were they given, what
			// Lambda sets wins.
			name: "Lambda's variables over the function's",
			f:    agent.Function{Name: "hello", Version: "2", MemoryMB: 128},
			own:  map[string]string{"AWS_REGION": "mars-1", "AWS_LAMBDA_RUNTIME_API": "10.0.0.1:80"},
			want: map[string]string{
				"TZ":                              ":UTC",
				"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
				"AWS_LAMBDA_FUNCTION_NAME":        "hello",
				"AWS_LAMBDA_FUNCTION_VERSION":     "2",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
				"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/hello",
				"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
				"AWS_REGION":                      "us-east-1",
				"AWS_DEFAULT_REGION":              "us-east-1",
				"LAMBDA_TASK_ROOT":                "/var/task",
				"LAMBDA_RUNTIME_DIR":              "/var/runtime",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{Region: tc.region})
			s := testSpec()
			s.Env = maps.Clone(tc.own)
			before := time.Now().UTC()
			c := startWith(t, h, eng, s, tc.f)
			after := time.Now().UTC()
			if !maps.Equal(s.Env, tc.own) {
				t.Errorf("the caller's Env changed to %v", s.Env)
			}

			got := maps.Clone(c.spec.Env)
			stream := got["AWS_LAMBDA_LOG_STREAM_NAME"]
			delete(got, "AWS_LAMBDA_LOG_STREAM_NAME")
			if !maps.Equal(got, tc.want) {
				t.Errorf("Env %v;\nwant %v", got, tc.want)
			}
			m := regexp.MustCompile(`^(\d{4}/\d{2}/\d{2})/\[(\d+|\$LATEST)\]([0-9a-f]{32})$`).FindStringSubmatch(stream)
			if m == nil {
				t.Fatalf("AWS_LAMBDA_LOG_STREAM_NAME %q; want date/[version]id", stream)
			}
			if d := m[1]; d != before.Format("2006/01/02") && d != after.Format("2006/01/02") {
				t.Errorf("AWS_LAMBDA_LOG_STREAM_NAME %q; want today's date, UTC", stream)
			}
			if m[2] != tc.want["AWS_LAMBDA_FUNCTION_VERSION"] {
				t.Errorf("AWS_LAMBDA_LOG_STREAM_NAME %q; want the version in brackets", stream)
			}
			// Each container has a stream of its own.
			other := startWith(t, h, eng, s, tc.f)
			if other.spec.Env["AWS_LAMBDA_LOG_STREAM_NAME"] == stream {
				t.Errorf("two containers have the stream %q", stream)
			}
		})
	}
}
