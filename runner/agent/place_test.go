package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/minilambda/minilambda/runner/agent"
)

// TestPlaceInit copies a given init into the state directory once per
// content, and refuses a file that is not an init.
func TestPlaceInit(t *testing.T) {
	given := staticInit(t)
	dir := filepath.Join(t.TempDir(), "state", "lambda-init")
	p, err := agent.PlaceInit(given, dir)
	if err != nil || filepath.Dir(p) != dir {
		t.Fatalf("%q %v", p, err)
	}
	again, err := agent.PlaceInit(given, dir)
	if err != nil || again != p {
		t.Errorf("placed again: %q %v", again, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory, want the one copy", len(entries))
	}
	bad := filepath.Join(t.TempDir(), "script")
	os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755)
	if _, err := agent.PlaceInit(bad, dir); !errors.Is(err, agent.ErrNoInit) {
		t.Errorf("a script: %v", err)
	}
}
