package boltcheck_test

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/minilambda/minilambda/eventlog/internal/boltcheck"
	bolt "go.etcd.io/bbolt"
)

// FuzzCheck: a file Check passes is one bbolt reads without a panic or a
// fault, every bucket and entry of it. Minimizing inputs the size of a
// file takes long; bound it:
//
//	go test -run '^$' -fuzz FuzzCheck -fuzztime 100000x -fuzzminimizetime 100x ./eventlog/internal/boltcheck
func FuzzCheck(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
	if err != nil {
		f.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("events"))
		for i := range 40 {
			b.Put([]byte{0, 0, 0, byte(i)}, []byte("a value of some length"))
		}
		small, _ := tx.CreateBucket([]byte("small"))
		nested, _ := small.CreateBucket([]byte("nested"))
		return nested.Put([]byte("k"), []byte("v"))
	})
	db.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "f.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if boltcheck.Check(path, boltcheck.Options{}) != nil {
			return
		}
		old := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(old)
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Check passed a file bbolt cannot read: %v", r)
			}
		}()
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			return // bbolt refuses it with an error: no harm
		}
		defer db.Close()
		db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
		})
	})
}

func walk(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return walk(b.Bucket(k))
		}
		return nil
	})
}
