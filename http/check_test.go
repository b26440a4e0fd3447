package http

import (
	"archive/tar"
	"bytes"
	"errors"
	stdhttp "net/http"
	"strings"
	"testing"
)

type entry struct {
	name, link string
	typ        byte
}

func makeTar(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
		if e.typ == tar.TypeReg {
			h.Size = 2
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte("{}"))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestCheckImageTar(t *testing.T) {
	manifest := entry{"manifest.json", "", tar.TypeReg}
	for _, tc := range []struct {
		name    string
		entries []entry
		ok      bool
	}{
		{"docker save layout", []entry{{"abc/", "", tar.TypeDir}, {"abc/layer.tar", "", tar.TypeReg}, manifest, {"repositories", "", tar.TypeReg}}, true},
		{"relative link inside", []entry{manifest, {"a/layer.tar", "", tar.TypeReg}, {"b/layer.tar", "../a/layer.tar", tar.TypeSymlink}}, true},
		{"no manifest", []entry{{"abc/layer.tar", "", tar.TypeReg}}, false},
		{"absolute path", []entry{manifest, {"/etc/passwd", "", tar.TypeReg}}, false},
		{"climbs out", []entry{manifest, {"../../etc/cron.d/x", "", tar.TypeReg}}, false},
		{"climbs out midway", []entry{manifest, {"a/../../x", "", tar.TypeReg}}, false},
		{"symlink out", []entry{manifest, {"a", "../../etc", tar.TypeSymlink}}, false},
		{"absolute symlink", []entry{manifest, {"a", "/etc/shadow", tar.TypeSymlink}}, false},
		{"hard link out", []entry{manifest, {"a", "../x", tar.TypeLink}}, false},
		{"device", []entry{manifest, {"dev", "", tar.TypeChar}}, false},
	} {
		err := checkImageTar(bytes.NewReader(makeTar(t, tc.entries...)))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errBadTar)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if err := checkImageTar(strings.NewReader("definitely not a tar archive, but long enough to look at it.......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................")); !errors.Is(err, errBadTar) {
		t.Errorf("garbage: %v", err)
	}
}

func FuzzCheckImageTar(f *testing.F) {
	f.Add(makeTar(f, entry{"manifest.json", "", tar.TypeReg}, entry{"a/layer.tar", "", tar.TypeReg}))
	f.Add(makeTar(f, entry{"manifest.json", "", tar.TypeReg}, entry{"a", "../../x", tar.TypeSymlink}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkImageTar(bytes.NewReader(data))
		if err != nil && !errors.Is(err, errBadTar) {
			t.Fatalf("error without errBadTar: %v", err)
		}
		if err != nil {
			return
		}
		// Whatever passes has no entry that escapes.
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if checkTarPath(h.Name) != nil {
				t.Fatalf("accepted %q", h.Name)
			}
		}
	})
}

func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"event": {"a": [1, 2, {"b": "}}}]]]"}]}}`, true},
		{ok, true},
		{deep, false},
		{`{"event": "` + strings.Repeat("[", 100) + `"}`, true},
		{"{\"event\": \"\xff\xfe\"}", false},
	} {
		if err := checkJSON([]byte(tc.body)); (err == nil) != tc.ok {
			t.Errorf("%.60q: %v", tc.body, err)
		}
	}
}

// FuzzDecode feeds arbitrary bodies to the request decoder of every JSON
// endpoint: it must answer a client error or decode, never panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name": "x", "image": "y", "env": {"A": "b"}}`))
	f.Add([]byte(`{"event": {"k": [1, 2, 3]}, "timeout": 3}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	s := New(Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{new(invokeBody), new(struct {
			Name string            `json:"name"`
			Env  map[string]string `json:"env"`
		})} {
			r := newRequest(data)
			err := s.decode(nopWriter{}, r, v, true)
			var br badRequest
			if err != nil && !errors.As(err, &br) {
				t.Fatalf("decode error that is not a client error: %v", err)
			}
			if err == nil && len(data) > 0 && checkJSON(data) != nil {
				t.Fatalf("decoded a body checkJSON refuses: %q", data)
			}
		}
	})
}

type nopWriter struct{}

func (nopWriter) Header() stdhttp.Header      { return stdhttp.Header{} }
func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriter) WriteHeader(int)             {}

func newRequest(body []byte) *stdhttp.Request {
	r, _ := stdhttp.NewRequest("POST", "/functions", bytes.NewReader(body))
	return r
}
