package function_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
)

// zipEntry is one entry of a test archive.
type zipEntry struct {
	name string
	mode fs.FileMode
	body string
	// size, when set, is the uncompressed size the header declares
	// instead of the body's.
	size uint64
}

func makeZip(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, e.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	// A declared size other than the body's: patch the central directory.
	for _, e := range entries {
		if e.size == 0 {
			continue
		}
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if f.Name == e.name {
				data = patchSize(t, data, e.name, uint32(f.UncompressedSize64), uint32(e.size))
			}
		}
	}
	return data
}

// patchSize rewrites the uncompressed size of name in its central
// directory header, where archive/zip reads it.
func patchSize(t *testing.T, data []byte, name string, from, to uint32) []byte {
	t.Helper()
	sig := []byte("PK\x01\x02")
	for i := bytes.Index(data, sig); i >= 0; {
		nameLen := int(data[i+28]) | int(data[i+29])<<8
		if string(data[i+46:i+46+nameLen]) == name {
			out := bytes.Clone(data)
			out[i+24], out[i+25], out[i+26], out[i+27] = byte(to), byte(to>>8), byte(to>>16), byte(to>>24)
			return out
		}
		j := bytes.Index(data[i+4:], sig)
		if j < 0 {
			break
		}
		i += 4 + j
	}
	t.Fatalf("no central directory entry for %s", name)
	return nil
}

func TestOpenZipRefusesHostileArchives(t *testing.T) {
	bootstrap := zipEntry{name: "bootstrap", mode: 0o755, body: "#!/bin/sh\n"}
	for _, tc := range []struct {
		name    string
		data    []byte
		want    string
		tooBig  bool
		invalid bool
	}{
		{name: "not a zip", data: []byte("this is no archive"), want: "could not unzip"},
		{name: "empty", data: nil, want: "empty"},
		{name: "too large", data: bytes.Repeat([]byte{0}, function.MaxZipBytes+1), want: "at most 52428800", tooBig: true},
		{name: "dot dot", data: makeZip(t, bootstrap, zipEntry{name: "../escape", mode: 0o644, body: "x"}), want: "escapes the archive's root"},
		{name: "dot dot inside", data: makeZip(t, zipEntry{name: "a/../../escape", mode: 0o644, body: "x"}), want: "escapes"},
		{name: "absolute", data: makeZip(t, zipEntry{name: "/etc/passwd", mode: 0o644, body: "x"}), want: "absolute path"},
		{name: "backslash", data: makeZip(t, zipEntry{name: `..\evil`, mode: 0o644, body: "x"}), want: "backslashes"},
		{name: "absolute link", data: makeZip(t, zipEntry{name: "lib", mode: fs.ModeSymlink | 0o777, body: "/etc"}), want: "outside the archive"},
		{name: "link up", data: makeZip(t, zipEntry{name: "a/lib", mode: fs.ModeSymlink | 0o777, body: "../../etc"}), want: "outside the archive"},
		{name: "file through a link", data: makeZip(t, zipEntry{name: "lib", mode: fs.ModeSymlink | 0o777, body: "."}, zipEntry{name: "lib/x", mode: 0o644, body: "x"}), want: "not a directory"},
		{name: "twice", data: makeZip(t, bootstrap, bootstrap), want: "twice"},
		{name: "device", data: makeZip(t, zipEntry{name: "null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}), want: "only directories, regular files and links"},
		{name: "fifo", data: makeZip(t, zipEntry{name: "pipe", mode: fs.ModeNamedPipe | 0o666}), want: "only directories"},
		{name: "bomb declared", data: makeZip(t, zipEntry{name: "a", mode: 0o644, body: "x", size: function.MaxUnzippedBytes + 1}), want: "250 MB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := function.OpenZip(tc.data)
			if err == nil {
				t.Fatalf("OpenZip accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			if tc.tooBig != errors.Is(err, function.ErrTooLarge) || tc.tooBig == errors.Is(err, function.ErrInvalid) {
				t.Errorf("error %q: too large %v, invalid %v; want too large %v", err, errors.Is(err, function.ErrTooLarge), errors.Is(err, function.ErrInvalid), tc.tooBig)
			}
			var fe *function.FieldError
			if !errors.As(err, &fe) || fe.Field != "zip_file" {
				t.Errorf("error %q is not about zip_file", err)
			}
		})
	}
}

// A bomb whose headers lie: each says 1 byte, the files hold far more.
// The listing passes; the reading stops at the lie, without reading on.
func TestWriteTarStopsAtALyingHeader(t *testing.T) {
	data := makeZip(t, zipEntry{name: "bomb", mode: 0o644, body: strings.Repeat("0", 10<<20), size: 1})
	a, err := function.OpenZip(data)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = a.WriteTar(tar.NewWriter(&out), "task")
	if !errors.Is(err, function.ErrInvalid) || !strings.Contains(err.Error(), "bomb") {
		t.Fatalf("WriteTar: %v, want an error about bomb", err)
	}
	if out.Len() > 1<<20 {
		t.Errorf("WriteTar wrote %d bytes of a file whose header says 1", out.Len())
	}
}

func TestWriteTarIsReadOnlyAndOwnedByRoot(t *testing.T) {
	data := makeZip(t,
		zipEntry{name: "bootstrap", mode: 0o777, body: "run me"},
		zipEntry{name: "lib/data.txt", mode: 0o666, body: "data"},
		zipEntry{name: "lib/link", mode: fs.ModeSymlink | 0o777, body: "data.txt"},
		zipEntry{name: "empty/", mode: fs.ModeDir | 0o777},
	)
	a, err := function.OpenZip(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if a.Sha256 != base64.StdEncoding.EncodeToString(sum[:]) || a.Size != int64(len(data)) {
		t.Errorf("Sha256 %s size %d, want the archive's", a.Sha256, a.Size)
	}
	if !a.Has("bootstrap") || a.Has("lib") || a.Has("nothing") {
		t.Errorf("Has: bootstrap %v, lib %v, nothing %v; want true, false, false", a.Has("bootstrap"), a.Has("lib"), a.Has("nothing"))
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := a.WriteTar(tw, "task"); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = fs.FileMode(h.Mode).String() + " " + h.Linkname + string(body)
	}
	want := map[string]string{
		"task/":             "-r-xr-xr-x ",
		"task/bootstrap":    "-r-xr-xr-x run me",
		"task/lib/":         "-r-xr-xr-x ",
		"task/lib/data.txt": "-r--r--r-- data",
		"task/lib/link":     "-rwxrwxrwx data.txt",
		"task/empty/":       "-r-xr-xr-x ",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
}

func TestCheckRuntime(t *testing.T) {
	none := func(string) bool { return false }
	if err := function.CheckRuntime("provided.al2023", none); err != nil {
		t.Errorf("provided.al2023: %v", err)
	}
	if err := function.CheckRuntime("cobol85", none); err == nil || !strings.Contains(err.Error(), "cobol85") {
		t.Errorf("cobol85: %v, want an error naming it", err)
	}
	if err := function.CheckRuntime("cobol85", func(r string) bool { return r == "cobol85" }); err != nil {
		t.Errorf("cobol85, mapped: %v", err)
	}
	if err := function.CheckRuntime("", none); err == nil {
		t.Error("no runtime accepted")
	}
}

func TestRunCommand(t *testing.T) {
	py := function.Spec{Mode: function.ModeLambda, Handler: "app.handler", Package: &function.Package{Runtime: "python3.12"}}
	if got := py.RunCommand(); len(got) != 1 || got[0] != "app.handler" {
		t.Errorf("python3.12 package: %q, want the handler", got)
	}
	provided := function.Spec{Mode: function.ModeLambda, Handler: "bootstrap", Package: &function.Package{Runtime: "provided.al2023"}}
	if got := provided.RunCommand(); got != nil {
		t.Errorf("provided.al2023 package: %q, want none (its entrypoint is bootstrap)", got)
	}
	own := py
	own.Command = []string{"own"}
	if got := own.RunCommand(); len(got) != 1 || got[0] != "own" {
		t.Errorf("a command of its own: %q", got)
	}
}
