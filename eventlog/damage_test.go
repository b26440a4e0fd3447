package eventlog_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	bolt "go.etcd.io/bbolt"
)

// bigLog writes a log of 400 events of about 300 bytes, enough for the
// events bucket to be a branch page over a dozen leaves, and closes it.
func bigLog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: counter{}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if _, err := l.Append(context.Background(), ev("thing.happened", "fn1", map[string]string{"pad": strings.Repeat("x", 200), "n": fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventsPages returns the page size, the events bucket's root page (a
// branch) and its first leaf.
func eventsPages(t *testing.T, path string) (pageSize int, root, leaf uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pageSize = db.Info().PageSize
	db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte("events")).RootPage())
		return nil
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := b[int(root)*pageSize:]
	if binary.NativeEndian.Uint16(p[8:]) != 0x01 {
		t.Fatalf("events root page %d is no branch", root)
	}
	return pageSize, root, binary.NativeEndian.Uint64(p[16+8:])
}

// poke writes b at off in the file, as a failing disk or a stray write
// would, without bbolt.
func poke(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }

// TestOpenRefusesDamage: Open checks an existing file before bbolt reads
// it, for writing and read-only, and names what is wrong.
func TestOpenRefusesDamage(t *testing.T) {
	for _, c := range []struct {
		name, want string
		damage     func(t *testing.T, path string)
	}{
		{"empty", "the file is empty", func(t *testing.T, path string) { os.Truncate(path, 0) }},
		{"truncated", "truncated", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		}},
		{"leaf flags", "flags 0x0 mark neither a branch nor a leaf page", func(t *testing.T, path string) {
			ps, _, leaf := eventsPages(t, path)
			poke(t, path, int64(leaf)*int64(ps)+8, u16(0))
		}},
		{"branch count", "65535 elements do not fit", func(t *testing.T, path string) {
			ps, root, _ := eventsPages(t, path)
			poke(t, path, int64(root)*int64(ps)+10, u16(0xFFFF))
		}},
		{"leaf count", "lies outside its page", func(t *testing.T, path string) {
			ps, _, leaf := eventsPages(t, path)
			b, _ := os.ReadFile(path)
			n := binary.NativeEndian.Uint16(b[int(leaf)*ps+10:])
			poke(t, path, int64(leaf)*int64(ps)+10, u16(n+3))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := bigLog(t)
			_, _, leaf := eventsPages(t, path)
			c.damage(t, path)
			for _, opts := range []eventlog.Options{{ReadOnly: true}, {Projector: counter{}}} {
				l, err := eventlog.Open(path, opts)
				if err == nil {
					l.Close()
					t.Fatalf("read-only %v: opened", opts.ReadOnly)
				}
				if !errors.Is(err, eventlog.ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("read-only %v: %v, want ErrCorrupt naming %s and saying %q", opts.ReadOnly, err, path, c.want)
				}
				if strings.Contains(c.name, "leaf") && !strings.Contains(err.Error(), fmt.Sprintf("page %d ", leaf)) {
					t.Errorf("read-only %v: %v does not name page %d", opts.ReadOnly, err, leaf)
				}
			}
		})
	}
}

// TestOpenCreatesOnlyWhereNoFile: a path with no file is a new log; an
// existing empty file is not one, and stays empty.
func TestOpenCreatesOnlyWhereNoFile(t *testing.T) {
	dir := t.TempDir()
	l, err := eventlog.Open(filepath.Join(dir, "new.db"), eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	if _, err := eventlog.Open(empty, eventlog.Options{}); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("empty file: %v", err)
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Fatalf("the refused file grew to %d bytes", fi.Size())
	}
}

// TestDamageWhileOpen damages the file under an open log. bbolt then
// panics on the page, or faults reading past the end of the shrunken
// file (SIGBUS), which would kill the process; every reader must return
// ErrCorrupt instead.
func TestDamageWhileOpen(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"leaf flags", func(t *testing.T, path string) {
			ps, _, leaf := eventsPages(t, path)
			poke(t, path, int64(leaf)*int64(ps)+8, u16(0))
		}},
		{"truncated to its meta pages", func(t *testing.T, path string) {
			ps, _, _ := eventsPages(t, path)
			if err := os.Truncate(path, int64(2*ps)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := bigLog(t)
			l, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c.damage(t, path)
			ctx := context.Background()
			err = l.Read(ctx, 1, eventlog.Filter{}, func(eventlog.Event) error { return nil })
			if !errors.Is(err, eventlog.ErrCorrupt) {
				t.Errorf("Read: %v", err)
			}
			err = l.View(func(r eventlog.ViewReader) error {
				_, err := r.Event(1)
				return err
			})
			if !errors.Is(err, eventlog.ErrCorrupt) {
				t.Errorf("View: %v", err)
			}
			if _, err := l.VerifyChain(ctx, nil); !errors.Is(err, eventlog.ErrCorrupt) {
				t.Errorf("VerifyChain: %v", err)
			}
		})
	}
}

// TestVerifyChain checks the chain without the views, and names the seq
// where it breaks.
func TestVerifyChain(t *testing.T) {
	path := bigLog(t)
	l, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := l.VerifyChain(context.Background(), nil)
	if err != nil || sum.Events != 400 {
		t.Fatalf("VerifyChain: %+v %v", sum, err)
	}
	l.Close()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		k := binary.BigEndian.AppendUint64(nil, 123)
		v := append([]byte(nil), b.Get(k)...)
		v[len(v)-40] ^= 1 // a byte of the data
		return b.Put(k, v)
	})
	db.Close()
	l, err = eventlog.Open(path, eventlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.VerifyChain(context.Background(), nil); !errors.Is(err, eventlog.ErrCorrupt) || !strings.Contains(err.Error(), "seq 123: hash chain broken") {
		t.Fatalf("VerifyChain of a changed event: %v", err)
	}
}

// TestVerifyEventsBesideAppends verifies a live log again and again while
// another goroutine appends: each check covers the head it started from,
// and what is appended meanwhile never makes it fail.
func TestVerifyEventsBesideAppends(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	for i := range 50 {
		if _, err := l.Append(ctx, ev("t", "fn", i)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	appended := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				appended <- nil
				return
			default:
			}
			if _, err := l.Append(ctx, ev("t", "fn", i), ev("t", "fn", i)); err != nil {
				appended <- err
				return
			}
		}
	}()
	checks := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) || checks < 20; checks++ {
		before, _ := l.Head()
		sum, err := l.VerifyEvents(ctx, nil)
		if err != nil {
			t.Fatalf("check %d: %v", checks, err)
		}
		if sum.Events < before {
			t.Fatalf("check %d covered %d events; the head was %d before it", checks, sum.Events, before)
		}
	}
	close(stop)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	head, _ := l.Head()
	t.Logf("%d checks beside appends up to seq %d", checks, head)
}
