package boltcheck_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/eventlog/internal/boltcheck"
	bolt "go.etcd.io/bbolt"
)

// build writes a bbolt file with a bucket "big" of 500 keys (a branch
// page over leaves), a small "small" bucket (inline) with a nested
// bucket, and returns its path, page size and the big bucket's root.
func build(t *testing.T) (path string, pageSize int, root uint64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "test.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		big, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for i := range 500 {
			if err := big.Put(fmt.Appendf(nil, "k%04d", i), []byte(strings.Repeat("v", 100))); err != nil {
				return err
			}
		}
		small, err := tx.CreateBucket([]byte("small"))
		if err != nil {
			return err
		}
		small.Put([]byte("a"), []byte("1"))
		nested, err := small.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		return nested.Put([]byte("b"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte("big")).RootPage())
		return nil
	})
	return path, db.Info().PageSize, root
}

// keys records the entries a bucket's walk meets.
type keys struct {
	got      []string
	sequence uint64
	ended    bool
}

func (k *keys) Next(key, _ []byte) error  { k.got = append(k.got, string(key)); return nil }
func (k *keys) End(sequence uint64) error { k.sequence, k.ended = sequence, true; return nil }

func TestCheckSoundFile(t *testing.T) {
	path, _, _ := build(t)
	walks := map[string]*keys{}
	var top []string
	err := boltcheck.Check(path, boltcheck.Options{
		Lock: true,
		Bucket: func(name []byte) boltcheck.Entries {
			k := &keys{}
			walks[string(name)] = k
			return k
		},
		TopLevel: func(names [][]byte) error {
			for _, n := range names {
				top = append(top, string(n))
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(top) != "[big small]" {
		t.Errorf("top level %v", top)
	}
	big, small := walks["big"], walks["small"]
	if big == nil || len(big.got) != 500 || big.got[0] != "k0000" || big.got[499] != "k0499" || !big.ended {
		t.Errorf("big bucket's walk: %+v", big)
	}
	// A nested bucket is walked, but its entries are not the top-level
	// bucket's.
	if small == nil || fmt.Sprint(small.got) != "[a]" || !small.ended {
		t.Errorf("small bucket's walk: %+v", small)
	}
}

func TestCheckHooksRefuse(t *testing.T) {
	path, _, _ := build(t)
	wrong := errors.New("not ours")
	err := boltcheck.Check(path, boltcheck.Options{TopLevel: func([][]byte) error { return wrong }})
	if err != wrong {
		t.Fatalf("TopLevel's error: %v", err)
	}
}

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

func TestCheckDamage(t *testing.T) {
	u16 := func(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
	u64 := func(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
	for _, c := range []struct {
		name, want string
		damage     func(path string, ps int, root uint64)
	}{
		{"branch flags", "flags 0x4 mark neither a branch nor a leaf page", func(path string, ps int, root uint64) {
			poke(t, path, int64(root)*int64(ps)+8, u16(0x04))
		}},
		{"branch count", "65535 elements do not fit", func(path string, ps int, root uint64) {
			poke(t, path, int64(root)*int64(ps)+10, u16(0xFFFF))
		}},
		// bbolt's own check would recurse into it until the stack ends.
		{"a branch pointing at itself", "reached twice", func(path string, ps int, root uint64) {
			poke(t, path, int64(root)*int64(ps)+16+8, u64(root))
		}},
		{"a page past the end", "outside the file's", func(path string, ps int, root uint64) {
			poke(t, path, int64(root)*int64(ps)+16+8, u64(1<<40))
		}},
		{"truncated", "truncated", func(path string, ps int, root uint64) {
			os.Truncate(path, int64(root)*int64(ps))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, ps, root := build(t)
			c.damage(path, ps, root)
			err := boltcheck.Check(path, boltcheck.Options{})
			if d, ok := errors.AsType[*boltcheck.Damage](err); !ok || !strings.Contains(d.Error(), c.want) {
				t.Fatalf("%v, want a *Damage saying %q", err, c.want)
			}
		})
	}
}

func TestCheckNotBolt(t *testing.T) {
	dir := t.TempDir()
	empty, text := filepath.Join(dir, "empty"), filepath.Join(dir, "text")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(text, []byte(strings.Repeat("not bbolt\n", 1000)), 0o600)
	if err := boltcheck.Check(empty, boltcheck.Options{}); !errors.Is(err, boltcheck.ErrEmpty) {
		t.Errorf("empty file: %v", err)
	}
	if err := boltcheck.Check(text, boltcheck.Options{}); !errors.Is(err, boltcheck.ErrNotBolt) || !strings.Contains(err.Error(), "in 10000 bytes") {
		t.Errorf("text file: %v", err)
	}
	if err := boltcheck.Check(filepath.Join(dir, "none"), boltcheck.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no file: %v", err)
	}
}

func TestCheckWaitsForTheLock(t *testing.T) {
	path, _, _ := build(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := boltcheck.Check(path, boltcheck.Options{Lock: true}); !errors.Is(err, boltcheck.ErrLocked) {
		t.Errorf("held for writing, with the lock: %v", err)
	}
	if err := boltcheck.Check(path, boltcheck.Options{}); err != nil {
		t.Errorf("held for writing, without the lock: %v", err)
	}
}

func TestGuard(t *testing.T) {
	mine := errors.New("mine")
	if err := boltcheck.Guard("x", func() error { return mine }); err != mine {
		t.Errorf("fn's error: %v", err)
	}
	err := boltcheck.Guard("reading page 7", func() error { panic("bad page") })
	if d, ok := errors.AsType[*boltcheck.Damage](err); !ok || d.Error() != "reading page 7: bad page" {
		t.Errorf("a panic: %v", err)
	}
}
