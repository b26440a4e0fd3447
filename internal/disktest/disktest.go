// Package disktest gives tests a small file system of their own to fill
// up: a tmpfs of a set size, mounted for the test and unmounted at its
// cleanup, so that "no space left on device" can be met for real without
// touching any other disk. Mounting needs root; without it the test is
// skipped, except under CI=true, where it fails.
package disktest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Small mounts a tmpfs of size bytes at a fresh directory and returns it.
func Small(t testing.TB, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "minilambda-disk-")
	if err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700", size)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		os.Remove(dir)
		msg := fmt.Sprintf("cannot mount a %d-byte tmpfs (root is needed): %v", size, err)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true requires it", msg)
		}
		t.Skipf("%s; skipping a test that fills a disk", msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}

// Fill writes a file into dir until the file system is full, and returns
// its path: removing it frees the space again.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil && !strings.Contains(err.Error(), "no space") {
		t.Fatal(err)
	}
	if f != nil {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
		// A tmpfs rounds to pages: take the last of it byte by byte.
		for {
			if _, err := f.Write(chunk[:1]); err != nil {
				break
			}
		}
		f.Close()
	}
	return path
}

// Free removes what Fill wrote.
func Free(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
