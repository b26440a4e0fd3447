package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// formatV1 is the first byte of every stored event; a later encoding gets a
// new byte, and decoders keep reading the old one.
const formatV1 = 1

// HashSize is the length of an event hash in bytes.
const HashSize = sha256.Size

// Hash is a SHA-256 link of the chain; it prints as lowercase hex.
type Hash [HashSize]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != HashSize {
		return fmt.Errorf("hash: want %d hex digits, got %d", 2*HashSize, len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Event is one entry of the log. Callers fill Type, the ids it concerns and
// Data; Append assigns Seq, ID, Time, Prev and Hash.
type Event struct {
	Seq          uint64          `json:"seq"`
	ID           ulid.ULID       `json:"id"`
	Type         string          `json:"type"`
	Time         time.Time       `json:"time"`
	FunctionID   string          `json:"function_id,omitempty"`
	InvocationID string          `json:"invocation_id,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
	Prev         Hash            `json:"prev"`
	Hash         Hash            `json:"hash"`
}

// maxField bounds each variable-length field of a stored event so that a
// corrupt length can never make a decoder allocate without bound.
const maxField = 64 << 20

// appendCanonical appends the bytes the hash covers.
func appendCanonical(b []byte, e *Event) []byte {
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.ID[:]...)
	b = appendField(b, e.Type)
	b = appendField(b, e.FunctionID)
	b = appendField(b, e.InvocationID)
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...)
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// chain computes the hash of the event whose canonical bytes are c.
func chain(prev Hash, c []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(c)
	var out Hash
	h.Sum(out[:0])
	return out
}

// encode returns the stored value of e: canonical bytes then hash. It also
// sets e.Hash from e.Prev.
func encode(e *Event) []byte {
	b := make([]byte, 0, 64+len(e.Type)+len(e.FunctionID)+len(e.InvocationID)+len(e.Data)+HashSize)
	b = appendCanonical(b, e)
	e.Hash = chain(e.Prev, b)
	return append(b, e.Hash[:]...)
}

// Decode parses a stored event value. The result shares no memory with v.
// Prev is not stored with the event and is left zero; Verify and the readers
// fill it from the previous event. Decode checks the structure only: whether
// the hash matches is Verify's business.
func Decode(v []byte) (Event, error) { return decode(v, nil) }

// interner shares the strings that repeat from event to event (types,
// function ids) while replaying a long log, which saves two allocations an
// event and a good part of a rebuild's garbage collection.
type interner map[string]string

const internMax = 4096

func (in interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < internMax {
		in[s] = s
	}
	return s
}

func decode(v []byte, in interner) (Event, error) {
	var e Event
	s, err := parse(v)
	if err != nil {
		return e, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	e.Seq = s.seq
	e.Time = time.Unix(0, int64(s.nanos)).UTC()
	copy(e.ID[:], s.id)
	e.Type = in.str(s.typ)
	e.FunctionID = in.str(s.functionID)
	e.InvocationID = string(s.invocationID)
	if len(s.data) > 0 {
		e.Data = append(json.RawMessage(nil), s.data...)
	}
	copy(e.Hash[:], s.hash)
	return e, nil
}

// stored is a stored event value taken apart: its fields share the
// value's memory.
type stored struct {
	seq, nanos                        uint64
	id, typ, functionID, invocationID []byte
	data, hash                        []byte
}

// parse takes a stored event value apart without copying it, checking its
// structure: decode's work without the allocations, which lets Open check
// every event of a large log.
func parse(v []byte) (stored, error) {
	var s stored
	if len(v) < 1+8+8+16+4+HashSize {
		return s, fmt.Errorf("event of %d bytes is too short", len(v))
	}
	if v[0] != formatV1 {
		return s, fmt.Errorf("unknown event format %d", v[0])
	}
	body := v[:len(v)-HashSize]
	s.hash = v[len(v)-HashSize:]
	p := body[1:]
	s.seq = binary.BigEndian.Uint64(p)
	s.nanos = binary.BigEndian.Uint64(p[8:])
	s.id = p[16:32]
	p = p[32:]
	var err error
	if s.typ, p, err = field(p); err != nil {
		return s, err
	}
	if s.functionID, p, err = field(p); err != nil {
		return s, err
	}
	if s.invocationID, p, err = field(p); err != nil {
		return s, err
	}
	if s.data, p, err = field(p); err != nil {
		return s, err
	}
	if len(p) != 0 {
		return s, fmt.Errorf("%d stray bytes after the event", len(p))
	}
	if len(s.typ) == 0 {
		return s, errors.New("event has no type")
	}
	return s, nil
}

func field(p []byte) (val, rest []byte, err error) {
	n, k := binary.Uvarint(p)
	// Lengths must be minimal, so that an event has one stored form.
	if k <= 0 || (k > 1 && p[k-1] == 0) || n > maxField || n > uint64(len(p)-k) {
		return nil, nil, errors.New("bad field length")
	}
	end := k + int(n)
	return p[k:end], p[end:], nil
}

// validate reports what makes e unfit to append.
func validate(e *Event) error {
	switch {
	case e.Type == "":
		return fmt.Errorf("%w: event without a type", ErrInvalid)
	case len(e.Type) > 256 || len(e.FunctionID) > 256 || len(e.InvocationID) > 256:
		return fmt.Errorf("%w: type or id longer than 256 bytes", ErrInvalid)
	case len(e.Data) > maxField:
		return fmt.Errorf("%w: data of %d bytes exceeds %d", ErrInvalid, len(e.Data), maxField)
	case len(e.Data) > 0 && !json.Valid(e.Data):
		return fmt.Errorf("%w: data of %s event is not valid JSON", ErrInvalid, e.Type)
	}
	return nil
}
