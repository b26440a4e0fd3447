// Package boltcheck reads a bbolt file's pages itself, with every read
// bounds-checked, to tell whether bbolt can open and read the file without
// a panic, a memory fault or a loop: the meta pages, then every page
// reachable from them (ids inside the file and reached once, flags,
// element counts and offsets inside the page, keys in order, bucket
// headers, nesting depth). Its callers' hooks check the entries of the
// top-level buckets as the walk meets them.
//
// The layout it reads is bbolt's format version 2 (go.etcd.io/bbolt/
// internal/common), in the machine's byte order as bbolt writes it.
//
// # Why not bbolt's own check
//
// bbolt trusts the file it maps, and its own check, Tx.Check, is no
// exception:
//
//   - It needs an opened DB, and opening is where a damaged file first
//     hurts: opening a file for writing without a stored freelist (the
//     log's NoFreelistSync) runs the same walk to rebuild the freelist,
//     and panics at the first thing it reports (a key out of order, a page
//     reached twice) in a goroutine no recover reaches.
//   - It runs in a goroutine of its own, so a panic on a damaged page
//     header or element count ends the process.
//   - It reads a page before it checks the page's id against the file's
//     size: a page id past the end reads outside the map and faults
//     (SIGBUS or SIGSEGV).
//   - It reports a page reached twice but walks on into it: a branch page
//     that points back at an ancestor recurses until the stack overflows,
//     which is fatal.
//   - It is not safe beside a writer on a read-only transaction, and it
//     knows nothing of what the buckets should hold.
//
// So [Check] runs first, reading the file through a read-only map of its
// own, and [Guard] turns what still goes wrong inside bbolt afterwards (a
// file damaged while open) into an error. bbolt's check is then safe to run
// as a second opinion on a file Check passed.
package boltcheck
