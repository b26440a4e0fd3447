package boltcheck

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// The layout of bbolt's format version 2.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64; an inline page follows when root is 0
	metaChecked      = 56 // magic, version, page size, flags, root bucket, freelist, pgid, txid
	metaSize         = metaChecked + 8

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageFreelist = 0x10
	leafBucket   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	// maxDepth bounds the nesting of pages and buckets: a B+tree of bbolt
	// pages is a handful of levels deep, so more is damage.
	maxDepth = 64
)

var native = binary.NativeEndian

var (
	// ErrEmpty means the file has no bytes at all.
	ErrEmpty = errors.New("the file is empty")

	// ErrNotBolt means no meta page of the file is valid: it is not a
	// bbolt file, or both its meta pages are lost.
	ErrNotBolt = errors.New("no valid bbolt meta page")

	// ErrLocked means the shared lock was not had within
	// Options.LockTimeout: another process holds the file for writing.
	ErrLocked = errors.New("the file is locked by another process")
)

// Damage is what is wrong with a file: a phrase that names the page, or
// the bucket, and what is wrong with it, for the caller to put in an
// error of its own. Check returns one for the first damage it finds, and
// Guard for a panic or a memory fault.
type Damage struct{ msg string }

func (d *Damage) Error() string { return d.msg }

func damagef(format string, args ...any) error {
	return &Damage{msg: fmt.Sprintf(format, args...)}
}

// Options say how Check reads the file and what it checks beyond bbolt's
// pages.
type Options struct {
	// Lock holds a shared lock on the file while Check reads it, as
	// bbolt's read-only open does, waiting at most LockTimeout for it:
	// for a caller that does not hold bbolt's lock on the file already.
	Lock        bool
	LockTimeout time.Duration

	// Bucket, when set, is called with the name of each top-level bucket
	// as the walk meets it, and returns what checks the bucket's entries,
	// or nil for nothing.
	Bucket func(name []byte) Entries

	// TopLevel, when set, is called once the top level is walked, with
	// the names of the top-level buckets in key order, before the pages
	// of the buckets: it refuses a file whose buckets are not the
	// caller's. The names are valid only during the call.
	TopLevel func(names [][]byte) error
}

// Entries checks the entries of one top-level bucket as the walk meets
// them, in key order; the walks of different buckets run in parallel.
// Errors it returns are Check's as they are. Keys and values are valid
// only during the call.
type Entries interface {
	// Next is given each key and value of the bucket that is not a
	// bucket nested in it.
	Next(k, v []byte) error
	// End is given the bucket's sequence once its entries are walked.
	End(sequence uint64) error
}

// Check reads the bbolt file at path without bbolt and returns the first
// damage that would make bbolt panic, fault or loop, as a *Damage; or
// ErrEmpty, ErrNotBolt (wrapped), ErrLocked, an error of the Options'
// hooks, or the error of opening or mapping the file.
func Check(path string, opts Options) error {
	data, release, err := mapFile(path, opts.Lock, opts.LockTimeout)
	if err != nil {
		return err
	}
	defer release()
	// The file is mapped: should it shrink under us, the read faults, and
	// the fault is an error like any other damage.
	return Guard("reading the file", func() error {
		c := &fileCheck{data: data, opts: opts}
		return c.run()
	})
}

// Guard runs fn and turns a panic, or a memory fault (a read outside the
// file bbolt maps), into a *Damage that names what was being read; fn's
// own error it returns as it is. bbolt trusts the bytes it reads; this is
// where a damaged file stops being a crash.
func Guard(what string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		r := recover()
		if f, ok := r.(interface{ Addr() uintptr }); ok && f.Addr() != 0 {
			err = damagef("%s: a memory fault at %#x: the file ends short of its pages, or changed underneath", what, f.Addr())
		} else if r != nil {
			err = damagef("%s: %v", what, r)
		}
	}()
	return fn()
}

type fileCheck struct {
	data     []byte
	opts     Options
	pageSize uint64
	hwm      uint64 // pages in use: ids from 0 to hwm-1

	topLevel [][]byte    // the names of the top-level buckets, in key order
	later    []topBucket // top-level buckets, walked after the top level
}

type meta struct {
	magic, version, pageSize uint32
	root, freelist, pgid     uint64
	txid, checksum           uint64
}

func readMeta(b []byte) (m meta, ok bool) {
	if len(b) < pageHeaderSize+metaSize {
		return m, false
	}
	b = b[pageHeaderSize:]
	m = meta{
		magic: native.Uint32(b[0:]), version: native.Uint32(b[4:]), pageSize: native.Uint32(b[8:]),
		root: native.Uint64(b[16:]), freelist: native.Uint64(b[32:]), pgid: native.Uint64(b[40:]),
		txid: native.Uint64(b[48:]), checksum: native.Uint64(b[56:]),
	}
	h := fnv.New64a()
	h.Write(b[:metaChecked])
	return m, m.magic == boltMagic && m.version == boltVersion && m.checksum == h.Sum64()
}

// meta picks the meta page as bbolt does: the page size from the first
// valid meta page, then the one of the two with the higher txid that is
// valid.
func (c *fileCheck) meta() (meta, error) {
	size := uint64(len(c.data))
	m0, ok0 := readMeta(c.data)
	switch {
	case ok0:
		c.pageSize = uint64(m0.pageSize)
	default:
		// bbolt looks for the second meta page at every page size from
		// 1 KiB to 16 MiB.
		for i := range 15 {
			pos := uint64(1024) << i
			if pos+1024 >= size {
				break
			}
			if m, ok := readMeta(c.data[pos:]); ok {
				c.pageSize = uint64(m.pageSize)
				break
			}
		}
	}
	if c.pageSize == 0 {
		return meta{}, fmt.Errorf("%w in %d bytes", ErrNotBolt, size)
	}
	if c.pageSize < 1024 || c.pageSize > 16<<20 {
		return meta{}, damagef("meta page: page size %d", c.pageSize)
	}
	if size < 2*c.pageSize {
		return meta{}, damagef("the file is %d bytes, shorter than its two meta pages of %d bytes: truncated", size, c.pageSize)
	}
	m0, ok0 = readMeta(c.data)
	m1, ok1 := readMeta(c.data[c.pageSize:])
	if m1.txid > m0.txid {
		m0, ok0, m1, ok1 = m1, ok1, m0, ok0
	}
	m := m0
	if !ok0 {
		m = m1
	}
	if !ok0 && !ok1 {
		return meta{}, damagef("both meta pages are damaged")
	}
	if uint64(m.pageSize) != c.pageSize {
		return meta{}, damagef("meta page: page size %d, the other says %d", m.pageSize, c.pageSize)
	}
	if m.pgid < 3 || m.root < 2 || m.root >= m.pgid || (m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid)) {
		return meta{}, damagef("meta page: root page %d, freelist page %d, %d pages", m.root, m.freelist, m.pgid)
	}
	if m.pgid > size/c.pageSize {
		return meta{}, damagef("the file is %d bytes, short of the %d pages of %d bytes its meta page counts: truncated", size, m.pgid, c.pageSize)
	}
	return m, nil
}

func (c *fileCheck) run() error {
	m, err := c.meta()
	if err != nil {
		return err
	}
	c.hwm = m.pgid
	root := &bucketWalk{seen: make(bitmap, (c.hwm+63)/64)}
	root.seen.mark(0)
	root.seen.mark(1)
	if m.freelist != noFreelist {
		if err := c.freelist(root, m.freelist); err != nil {
			return err
		}
	}
	if err := c.node(root, m.root, 0, nil, nil, 1); err != nil {
		return err
	}
	if c.opts.TopLevel != nil {
		if err := c.opts.TopLevel(c.topLevel); err != nil {
			return err
		}
	}
	return c.walkBuckets(root.seen)
}

// walkBuckets walks the top-level buckets the walk of the top level left
// for later, in parallel: the check reads every page, and a few large
// buckets hold most of them (in an event log, the events and the
// invocations view hold about two thirds and one third). Each
// bucket marks the pages it reaches in a bitmap of its own, merged into
// seen at the end: no page may be reached twice.
func (c *fileCheck) walkBuckets(seen bitmap) error {
	jobs := make(chan topBucket)
	errs := make(chan error, len(c.later))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(c.later)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				errs <- Guard("reading the file", func() error { return c.walk(j) })
			}
		}()
	}
	// The largest first (in an event log, the events bucket).
	slices.SortFunc(c.later, func(a, b topBucket) int { return cmp.Compare(b.size, a.size) })
	for _, j := range c.later {
		j.b.seen = make(bitmap, len(seen))
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	for _, j := range c.later {
		for i, w := range j.b.seen {
			if both := seen[i] & w; both != 0 {
				return damagef("page %d: reached twice, from bucket %q and from elsewhere", uint64(i)*64+uint64(bits.TrailingZeros64(both)), j.b.name)
			}
			seen[i] |= w
		}
	}
	return nil
}

// topBucket is a top-level bucket whose pages are still to be checked.
type topBucket struct {
	b          *bucketWalk
	root, from uint64
	sequence   uint64
	size       int // how many pages its root page points at, as a guess of its size
}

func (c *fileCheck) walk(j topBucket) error {
	if err := c.node(j.b, j.root, j.from, nil, nil, 1); err != nil {
		return err
	}
	if j.b.entries != nil {
		return j.b.entries.End(j.sequence)
	}
	return nil
}

// bitmap holds a bit for each page of the file.
type bitmap []uint64

// mark records that page id was reached and reports whether it was the
// first time.
func (m bitmap) mark(id uint64) bool {
	bit := uint64(1) << (id % 64)
	if m[id/64]&bit != 0 {
		return false
	}
	m[id/64] |= bit
	return true
}

// page returns the bytes of page id and its overflow pages, checking that
// they lie in the file and that nothing else reached them.
func (c *fileCheck) page(b *bucketWalk, id, from uint64) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, damagef("page %d: points at page %d, outside the file's %d pages", from, id, c.hwm)
	}
	p := c.data[id*c.pageSize:]
	if got := native.Uint64(p); got != id {
		return nil, damagef("page %d: its header says page %d", id, got)
	}
	overflow := uint64(native.Uint32(p[12:]))
	if overflow >= c.hwm-id {
		return nil, damagef("page %d: %d overflow pages run past the file's %d pages", id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if !b.seen.mark(i) {
			return nil, damagef("page %d: reached twice (the second time from page %d)", i, from)
		}
	}
	return p[:(overflow+1)*c.pageSize], nil
}

func (c *fileCheck) freelist(root *bucketWalk, id uint64) error {
	p, err := c.page(root, id, 0)
	if err != nil {
		return err
	}
	if flags := native.Uint16(p[8:]); flags != pageFreelist {
		return damagef("page %d: flags %#x, want a freelist page", id, flags)
	}
	idx, count := uint64(0), uint64(native.Uint16(p[10:]))
	if count == 0xFFFF {
		idx, count = 1, native.Uint64(p[pageHeaderSize:])
	}
	room := uint64(len(p)-pageHeaderSize) / 8
	if count > room || idx+count > room {
		return damagef("page %d: a freelist of %d pages does not fit %d bytes", id, count, len(p))
	}
	for i := idx; i < idx+count; i++ {
		if free := native.Uint64(p[pageHeaderSize+8*i:]); free < 2 || free >= c.hwm {
			return damagef("page %d: the freelist holds page %d, outside the file's %d pages", id, free, c.hwm)
		}
	}
	return nil
}

// bucketWalk is the bucket whose pages are being walked.
type bucketWalk struct {
	name  string // the path of bucket names; empty for the top level
	depth int
	// entries, for a top-level bucket, checks its entries as the walk
	// meets them: what Options.Bucket returned for it.
	entries Entries
	seen    bitmap // the pages reached, shared with the buckets inside
}

func (b *bucketWalk) where(page uint64) string {
	switch {
	case b.name == "" && page == 0:
		return "top level"
	case b.name == "":
		return fmt.Sprintf("page %d", page)
	case page == 0:
		return fmt.Sprintf("bucket %q, inline", b.name)
	}
	return fmt.Sprintf("page %d (bucket %q)", page, b.name)
}

// node checks the page id and the pages under it: every key in
// [lo, hi), in order, every element inside its page.
func (c *fileCheck) node(b *bucketWalk, id, from uint64, lo, hi []byte, depth int) error {
	if depth > maxDepth {
		return damagef("%s: pages nest deeper than %d levels", b.where(from), maxDepth)
	}
	p, err := c.page(b, id, from)
	if err != nil {
		return err
	}
	flags, count := native.Uint16(p[8:]), uint64(native.Uint16(p[10:]))
	switch flags {
	case pageLeaf:
		return c.leaf(b, id, p, count, lo, hi)
	case pageBranch:
	default:
		return damagef("%s: flags %#x mark neither a branch nor a leaf page", b.where(id), flags)
	}
	if count == 0 {
		return damagef("%s: a branch page with no elements", b.where(id))
	}
	dataStart, err := elements(b, id, p, count)
	if err != nil {
		return err
	}
	keys := make([][]byte, count)
	for i := range count {
		off := pageHeaderSize + i*elementSize
		pos, ksize := uint64(native.Uint32(p[off:])), uint64(native.Uint32(p[off+4:]))
		if off+pos < dataStart || off+pos+ksize > uint64(len(p)) {
			return damagef("%s: key %d lies outside its page", b.where(id), i)
		}
		keys[i] = p[off+pos : off+pos+ksize]
		var prev []byte
		if i > 0 {
			prev = keys[i-1]
		}
		if err := inOrder(b, id, i, count, prev, keys[i], lo, hi); err != nil {
			return err
		}
	}
	for i := range count {
		next := hi
		if i+1 < count {
			next = keys[i+1]
		}
		child := native.Uint64(p[pageHeaderSize+i*elementSize+8:])
		if err := c.node(b, child, id, keys[i], next, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// elements checks that count elements fit page p and returns where the
// keys and values begin, right after them.
func elements(b *bucketWalk, id uint64, p []byte, count uint64) (uint64, error) {
	end := pageHeaderSize + count*elementSize
	if end > uint64(len(p)) {
		return 0, damagef("%s: %d elements do not fit a page of %d bytes", b.where(id), count, len(p))
	}
	return end, nil
}

// inOrder checks key k, the i-th of count on its page, against the key
// before it and, first and last, against the bounds its parent page sets:
// keys in order between bounds are all within them. That is bbolt's own
// check, which panics where nothing recovers when it opens a file for
// writing.
func inOrder(b *bucketWalk, id, i, count uint64, prev, k, lo, hi []byte) error {
	switch {
	case i == 0 && lo != nil && bytes.Compare(k, lo) < 0:
		return damagef("%s: key %d sorts before the key its parent page has for it", b.where(id), i)
	case i > 0 && bytes.Compare(prev, k) >= 0:
		return damagef("%s: key %d does not sort after key %d", b.where(id), i, i-1)
	case i == count-1 && hi != nil && bytes.Compare(k, hi) >= 0:
		return damagef("%s: key %d does not sort before the next key of its parent page", b.where(id), i)
	}
	return nil
}

// leaf checks the elements of a leaf page, or of an inline bucket's page
// (id 0), and the buckets they hold.
func (c *fileCheck) leaf(b *bucketWalk, id uint64, p []byte, count uint64, lo, hi []byte) error {
	dataStart, err := elements(b, id, p, count)
	if err != nil {
		return err
	}
	var prev []byte
	for i := range count {
		off := pageHeaderSize + i*elementSize
		flags := native.Uint32(p[off:])
		pos, ksize, vsize := uint64(native.Uint32(p[off+4:])), uint64(native.Uint32(p[off+8:])), uint64(native.Uint32(p[off+12:]))
		if off+pos < dataStart || off+pos+ksize+vsize > uint64(len(p)) {
			return damagef("%s: element %d lies outside its page", b.where(id), i)
		}
		k := p[off+pos : off+pos+ksize]
		v := p[off+pos+ksize : off+pos+ksize+vsize]
		if err := inOrder(b, id, i, count, prev, k, lo, hi); err != nil {
			return err
		}
		prev = k
		switch flags {
		case leafBucket:
			if err := c.bucket(b, id, k, v); err != nil {
				return err
			}
		case 0:
			if b.depth == 0 {
				return damagef("%s: top-level key %q is not a bucket", b.where(id), k)
			}
			if b.entries != nil {
				if err := b.entries.Next(k, v); err != nil {
					return err
				}
			}
		default:
			return damagef("%s: element %d has flags %#x", b.where(id), i, flags)
		}
	}
	return nil
}

// bucket checks the bucket stored under name in a leaf of parent.
func (c *fileCheck) bucket(parent *bucketWalk, id uint64, name, v []byte) error {
	child := &bucketWalk{name: string(name), depth: parent.depth + 1, seen: parent.seen}
	if parent.name != "" {
		child.name = parent.name + "/" + string(name)
	}
	if child.depth > maxDepth {
		return damagef("%s: buckets nest deeper than %d levels", parent.where(id), maxDepth)
	}
	if parent.depth == 0 {
		c.topLevel = append(c.topLevel, name)
		if c.opts.Bucket != nil {
			child.entries = c.opts.Bucket(name)
		}
	}
	if len(v) < bucketHeaderSize {
		return damagef("%s: bucket %q: a header of %d bytes", parent.where(id), child.name, len(v))
	}
	root := native.Uint64(v)
	switch {
	case root != 0 && parent.depth == 0:
		size := 0
		if root < c.hwm {
			size = int(native.Uint16(c.data[root*c.pageSize+10:]))
		}
		c.later = append(c.later, topBucket{b: child, root: root, from: id, sequence: native.Uint64(v[8:]), size: size})
		return nil
	case root != 0:
		if err := c.node(child, root, id, nil, nil, 1); err != nil {
			return err
		}
	default:
		page := v[bucketHeaderSize:]
		if len(page) < pageHeaderSize {
			return damagef("%s: inline bucket %q: a page of %d bytes", parent.where(id), child.name, len(page))
		}
		if flags := native.Uint16(page[8:]); flags != pageLeaf {
			return damagef("%s: inline bucket %q: flags %#x, want a leaf", parent.where(id), child.name, flags)
		}
		if err := c.leaf(child, 0, page, uint64(native.Uint16(page[10:])), nil, nil); err != nil {
			return err
		}
	}
	if child.entries != nil {
		return child.entries.End(native.Uint64(v[8:]))
	}
	return nil
}

// mapFile maps the file at path read-only, under a shared lock if lock
// is set; release unmaps it and drops the lock.
func mapFile(path string, lock bool, timeout time.Duration) (data []byte, release func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if lock {
		if err := lockShared(f, timeout); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if fi.Size() == 0 {
		f.Close()
		return nil, nil, ErrEmpty
	}
	data, unmap, err := mapRead(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return data, func() {
		unmap()
		f.Close() // drops the lock
	}, nil
}
