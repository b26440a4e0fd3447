package eventlog

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecode(f *testing.F) {
	e := Event{Seq: 7, Type: "invocation.queued", FunctionID: "f", InvocationID: "i", Data: []byte(`{"v":1}`), Time: time.Unix(1, 2)}
	f.Add(encode(&e))
	e2 := Event{Seq: 1, Type: "x"}
	f.Add(encode(&e2))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := Decode(v)
		if err != nil {
			return
		}
		// Whatever decodes must be exactly what encoding it again gives:
		// one event, one stored form, so the hash covers every byte.
		if got := appendCanonical(nil, &e); !bytes.Equal(got, v[:len(v)-HashSize]) {
			t.Fatalf("decode/encode round trip differs:\n in %x\nout %x", v[:len(v)-HashSize], got)
		}
	})
}
