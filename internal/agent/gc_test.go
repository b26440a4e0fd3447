package agent_test

import (
	"runtime/debug"
	"testing"

	"github.com/minilambda/minilambda/internal/agent"
)

func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	restore := agent.TuneGC()
	if got := debug.SetGCPercent(agent.ServeGCPercent); got != agent.ServeGCPercent {
		t.Errorf("GC percent %d, want %d", got, agent.ServeGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != agent.ServeMemoryLimit {
		t.Errorf("memory limit %d, want %d", got, agent.ServeMemoryLimit)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("restored GC percent %d, want 100", got)
	}

	// An operator's GOGC or GOMEMLIMIT leaves both as they are.
	limit := debug.SetMemoryLimit(-1)
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "1")
			defer agent.TuneGC()()
			if got := debug.SetGCPercent(100); got != 100 {
				t.Errorf("with %s set, GC percent %d", env, got)
			}
			if got := debug.SetMemoryLimit(-1); got != limit {
				t.Errorf("with %s set, memory limit %d, want %d", env, got, limit)
			}
		})
	}
}
