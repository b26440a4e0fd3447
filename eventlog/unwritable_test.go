package eventlog_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/disktest"
)

// TestUnwritableFile puts the log on a small file system and fills it: an
// append the file refuses is an error wrapping ErrUnwritable that wrote
// nothing, Writable says so, and both recover by themselves once there is
// room again.
func TestUnwritableFile(t *testing.T) {
	dir := disktest.Small(t, 32<<20)
	var refused int
	l, err := eventlog.Open(filepath.Join(dir, "events.db"), eventlog.Options{
		Projector: counter{}, OnUnwritable: func(error) { refused++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	big := eventlog.Event{Type: "big", Data: []byte(`"` + strings.Repeat("x", 1<<20) + `"`)}
	if _, err := l.Append(ctx, big); err != nil {
		t.Fatal(err)
	}
	if err := l.Writable(); err != nil {
		t.Fatalf("writable before the disk is full: %v", err)
	}
	head, hash := l.Head()

	filler := disktest.Fill(t, dir)
	if _, err := l.Append(ctx, big, big); !errors.Is(err, eventlog.ErrUnwritable) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("append to a full disk: %v", err)
	}
	if h, hh := l.Head(); h != head || hh != hash {
		t.Errorf("a refused append moved the head to %d", h)
	}
	if err := l.Writable(); !errors.Is(err, eventlog.ErrUnwritable) {
		t.Errorf("writable with the disk full: %v", err)
	}
	if refused == 0 {
		t.Error("OnUnwritable was not told")
	}

	disktest.Free(t, filler)
	deadline := time.Now().Add(10 * time.Second)
	for l.Writable() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still unwritable after the disk has room: %v", l.Writable())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := l.Append(ctx, big, big); err != nil {
		t.Fatalf("append once there is room: %v", err)
	}
	if _, err := l.Verify(ctx, counter{}, nil); err != nil {
		t.Errorf("verify: %v", err)
	}
}
