package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	restore := tuneServeGC(300 << 20)
	if got := debug.SetGCPercent(gcPercent); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 600<<20 {
		t.Errorf("memory limit %d, want twice the budget, %d", got, 600<<20)
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
			defer tuneGC()()
			if got := debug.SetGCPercent(100); got != 100 {
				t.Errorf("with %s set, GC percent %d", env, got)
			}
			if got := debug.SetMemoryLimit(-1); got != limit {
				t.Errorf("with %s set, memory limit %d, want %d", env, got, limit)
			}
		})
	}
}
