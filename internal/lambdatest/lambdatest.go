// Package lambdatest gives the tests of one process a directory where the
// function containers' init is built once, on first use, and reused: a
// service given it as its runner.Options.InitDir builds the init
// there only if no build of the same source is there yet. The package's
// TestMain removes the directory with Main.
package lambdatest

import (
	"os"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	err  error
)

// InitDir returns the process's directory for builds of the init.
func InitDir(t testing.TB) string {
	t.Helper()
	once.Do(func() { dir, err = os.MkdirTemp("", "minilambda-test-init-") })
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Main runs a test package's tests, then removes the directory: call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}
