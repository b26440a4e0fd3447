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

	// An operator's GOGC wins.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	restore = agent.TuneGC()
	defer restore()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("with GOGC=150 set, GC percent %d", got)
	}
}
