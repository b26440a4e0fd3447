package http

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of JSON bodies. encoding/json would follow
// ten thousand levels; no event needs more than a few dozen.
const MaxDepth = 64

// checkJSON refuses what json.Valid lets through but the API should not:
// invalid UTF-8 (encoding/json would quietly replace it) and deep nesting.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return badRequest{"request body is not valid UTF-8"}
	}
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth {
				return badRequest{fmt.Sprintf("request body nests deeper than %d levels", MaxDepth)}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// errBadTar wraps what is wrong with an uploaded archive.
var errBadTar = errors.New("not a docker save archive")

// maxTarEntries bounds the entries of an uploaded archive; a docker save
// of a large image has a few hundred.
const maxTarEntries = 100000

// checkImageTar reads an uploaded archive before the engine sees it: it
// must be a tar with a top-level manifest.json (as docker save writes),
// and no entry may be absolute, climb out with "..", or link outside it.
func checkImageTar(r io.Reader) error {
	tr := tar.NewReader(r)
	manifest := false
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errBadTar, err)
		}
		if n >= maxTarEntries {
			return fmt.Errorf("%w: more than %d entries", errBadTar, maxTarEntries)
		}
		if err := checkTarPath(h.Name); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(h.Name), target)
			}
			if err := checkTarPath(target); err != nil {
				return fmt.Errorf("%w: link %q points outside the archive", errBadTar, h.Name)
			}
		case tar.TypeLink:
			if err := checkTarPath(h.Linkname); err != nil {
				return fmt.Errorf("%w: link %q points outside the archive", errBadTar, h.Name)
			}
		case tar.TypeReg, tar.TypeDir:
		default:
			return fmt.Errorf("%w: entry %q has an unexpected type %q", errBadTar, h.Name, h.Typeflag)
		}
		if path.Clean(h.Name) == "manifest.json" && h.Typeflag == tar.TypeReg {
			manifest = true
		}
	}
	if !manifest {
		return fmt.Errorf("%w: no manifest.json (make it with docker save)", errBadTar)
	}
	return nil
}

func checkTarPath(name string) error {
	clean := path.Clean(name)
	if name == "" || path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: entry %q escapes the archive", errBadTar, name)
	}
	return nil
}
