package function

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// Zip packages: a function deployed as a .zip archive of its code and a
// runtime, as Lambda's PackageType Zip. The archive's files become
// /var/task of an image built on the runtime's base image; these are the
// rules an archive must keep, Lambda's where it has them.
const (
	// MaxZipBytes is the largest archive: Lambda's 50 MB for a direct
	// upload.
	MaxZipBytes = 50 << 20
	// MaxUnzippedBytes is the most an archive's files may hold together:
	// Lambda's 250 MB.
	MaxUnzippedBytes = 262144000
	// MaxZipRequestBytes is the body limit of the requests that carry an
	// archive, base64 inside JSON: a MaxZipBytes archive and its settings.
	MaxZipRequestBytes = 70 << 20
	// MaxZipEntries bounds an archive's entries, so that its listing is
	// held in bounded memory whatever its headers claim.
	MaxZipEntries = 100000
	// maxLinkTarget bounds a symbolic link's target.
	maxLinkTarget = 4096
	// TaskRoot is where a package's files are, as on Lambda.
	TaskRoot = "/var/task"
)

// ErrTooLarge wraps an upload past a size limit; the API answers 413.
var ErrTooLarge = errors.New("too large")

// Package is what a function deployed as a zip archive was built from.
// Its image is the server's build of it (Spec.Image); a published version
// freezes that image by ID, and its package with it.
type Package struct {
	// Runtime is the Lambda runtime (provided.al2023, python3.12, ...).
	Runtime string `json:"runtime"`
	// CodeSha256 is the base64 of the archive's SHA-256, and CodeSize its
	// length in bytes, as Lambda's.
	CodeSha256 string `json:"code_sha256"`
	CodeSize   int64  `json:"code_size"`
	// BaseImage is the image beneath /var/task: "scratch" (none), or the
	// image the operator maps the runtime to.
	BaseImage string `json:"base_image"`
}

// Runtimes are the Lambda runtime identifiers a zip package may name, as
// Lambda's; an operator may map other names to images too.
var Runtimes = []string{
	"provided.al2023", "provided.al2", "provided",
	"python3.13", "python3.12", "python3.11", "python3.10", "python3.9",
	"nodejs22.x", "nodejs20.x", "nodejs18.x",
	"java21", "java17", "java11", "java8.al2",
	"dotnet8", "ruby3.3", "ruby3.2",
}

// ScratchImage names the empty base image: the package's files alone.
const ScratchImage = "scratch"

// ProvidedRuntime reports whether runtime is an OS-only one, whose
// runtime is the package's own bootstrap file.
func ProvidedRuntime(runtime string) bool {
	return runtime == "provided" || strings.HasPrefix(runtime, "provided.")
}

// CheckRuntime refuses a runtime that is neither Lambda's nor one the
// operator mapped (mapped).
func CheckRuntime(runtime string, mapped func(string) bool) error {
	if runtime == "" {
		return fieldErr("runtime", "a zip package needs a runtime: one of %s", strings.Join(Runtimes, ", "))
	}
	if !slices.Contains(Runtimes, runtime) && !mapped(runtime) {
		return fieldErr("runtime", "runtime %.64q is not one of Lambda's (%s) nor one this server maps to an image", runtime, strings.Join(Runtimes, ", "))
	}
	return nil
}

// Archive is a zip package whose listing passed the rules: names inside
// the root, only directories, regular files and links that stay inside
// it, its declared sizes within the limits. Its contents are checked as
// they are read (WriteTar).
type Archive struct {
	data    []byte
	entries []entry
	// Sha256 is the base64 SHA-256 of the archive, Size its length.
	Sha256 string
	Size   int64
}

type entry struct {
	name string // clean, relative, no trailing slash
	mode fs.FileMode
	link string
	f    *zip.File
}

// OpenZip checks the archive data against the rules, reading its listing
// and its links' targets, not its files. Errors wrap ErrInvalid, or
// ErrTooLarge for an archive past MaxZipBytes, and say what is wrong.
func OpenZip(data []byte) (*Archive, error) {
	if len(data) > MaxZipBytes {
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, fieldErr("zip_file", "the zip archive is %d bytes; at most %d (50 MB) may be uploaded", len(data), MaxZipBytes))
	}
	if len(data) == 0 {
		return nil, InvalidField("zip_file", "the zip archive is empty")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, InvalidField("zip_file", "could not unzip the uploaded file (%v): check that it is a .zip archive", err)
	}
	if len(zr.File) > MaxZipEntries {
		return nil, InvalidField("zip_file", "the zip archive has %d entries; at most %d", len(zr.File), MaxZipEntries)
	}
	sum := sha256.Sum256(data)
	a := &Archive{data: data, Sha256: base64.StdEncoding.EncodeToString(sum[:]), Size: int64(len(data))}
	var total uint64
	seen := map[string]fs.FileMode{}
	for _, f := range zr.File {
		name, err := entryName(f.Name)
		if err != nil {
			return nil, InvalidField("zip_file", "%v", err)
		}
		mode := f.Mode()
		e := entry{name: name, f: f}
		switch {
		case mode.IsDir():
			e.mode = fs.ModeDir | 0o555
		case mode&fs.ModeSymlink != 0:
			link, err := linkTarget(f)
			if err != nil {
				return nil, InvalidField("zip_file", "%v", err)
			}
			if err := checkLink(name, link); err != nil {
				return nil, InvalidField("zip_file", "%v", err)
			}
			e.mode, e.link = fs.ModeSymlink|0o777, link
		case mode.IsRegular():
			// Read-only for all; executable for all when any may run it.
			e.mode = 0o444
			if mode&0o111 != 0 {
				e.mode = 0o555
			}
			total += f.UncompressedSize64
			if total > MaxUnzippedBytes {
				return nil, InvalidField("zip_file", "the archive's files hold more than %d bytes (250 MB) unzipped", MaxUnzippedBytes)
			}
		default:
			return nil, InvalidField("zip_file", "%q is a %v: an archive may hold only directories, regular files and links", name, mode.Type())
		}
		if prev, ok := seen[name]; ok && !(prev.IsDir() && e.mode.IsDir()) {
			return nil, InvalidField("zip_file", "%q is in the archive twice", name)
		}
		seen[name] = e.mode
		a.entries = append(a.entries, e)
	}
	// A file's parent must be a directory, never a file or a link: a link
	// would take the file outside the root.
	for _, e := range a.entries {
		for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
			if m, ok := seen[dir]; ok && !m.IsDir() {
				return nil, InvalidField("zip_file", "%q is inside %q, which is not a directory", e.name, dir)
			}
		}
	}
	return a, nil
}

// entryName is an entry's name made relative and clean, or why it cannot
// be: absolute, escaping the root, or not a name at all.
func entryName(raw string) (string, error) {
	if raw == "" || strings.ContainsAny(raw, "\x00\\") || !utf8.ValidString(raw) {
		return "", fmt.Errorf("the archive has an entry named %.80q: names must be slash-separated UTF-8, without backslashes", raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("the archive's entry %.80q has an absolute path: its files must be inside the archive's root", raw)
	}
	for _, part := range strings.Split(strings.TrimSuffix(raw, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("the archive's entry %.80q escapes the archive's root", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return "", fmt.Errorf("the archive has an entry named %.80q, which is its root", raw)
	}
	return name, nil
}

// linkTarget reads a symbolic link's target: its entry's contents.
func linkTarget(f *zip.File) (string, error) {
	if f.UncompressedSize64 > maxLinkTarget {
		return "", fmt.Errorf("the link %q has a target of %d bytes; at most %d", f.Name, f.UncompressedSize64, maxLinkTarget)
	}
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("could not read the link %q: %v", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("could not read the link %q: %v", f.Name, err)
	}
	if len(b) == 0 || len(b) > maxLinkTarget || bytes.IndexByte(b, 0) >= 0 {
		return "", fmt.Errorf("the link %q has no valid target", f.Name)
	}
	return string(b), nil
}

// checkLink refuses a link whose target lies outside the archive's root:
// absolute, or above the root from where the link is. (A target inside
// it through another link is that link's to keep inside.)
func checkLink(name, target string) error {
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("the link %q points at %.80q, outside the archive: links must be relative and stay inside it", name, target)
	}
	depth := strings.Count(name, "/") // directories the link is in
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return fmt.Errorf("the link %q points at %.80q, outside the archive: links must stay inside it", name, target)
			}
		default:
			depth++
		}
	}
	return nil
}

// Has reports whether the archive holds a file (or a link) at name.
func (a *Archive) Has(name string) bool {
	return slices.ContainsFunc(a.entries, func(e entry) bool { return e.name == name && !e.mode.IsDir() })
}

// WriteTar writes the archive's entries to tw under root (a relative
// path), owned by root, read-only, reading each file and checking what it
// holds: a file whose contents are longer than its header says, or fail
// their checksum, ends it with an error wrapping ErrInvalid, as does more
// than MaxUnzippedBytes in all.
func (a *Archive) WriteTar(tw *tar.Writer, root string) error {
	dirs := map[string]bool{}
	var mkdir func(dir string) error
	mkdir = func(dir string) error {
		if dir == "." || dirs[dir] {
			return nil
		}
		if err := mkdir(path.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path.Join(root, dir) + "/", Mode: 0o555, Format: tar.FormatPAX})
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: root + "/", Mode: 0o555, Format: tar.FormatPAX}); err != nil {
		return err
	}
	var total int64
	for _, e := range a.entries {
		if e.mode.IsDir() {
			if err := mkdir(e.name); err != nil {
				return err
			}
			continue
		}
		if err := mkdir(path.Dir(e.name)); err != nil {
			return err
		}
		h := &tar.Header{Name: path.Join(root, e.name), Mode: int64(e.mode.Perm()), Format: tar.FormatPAX, ModTime: e.f.Modified}
		if e.link != "" {
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(e.f.UncompressedSize64)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		rc, err := e.f.Open()
		if err != nil {
			return InvalidField("zip_file", "could not unzip %q: %v", e.name, err)
		}
		// archive/zip fails a file that holds more than its header says,
		// or does not match its checksum, as it reads it.
		n, err := io.Copy(tw, rc)
		rc.Close()
		total += n
		switch {
		case errors.Is(err, zip.ErrChecksum), errors.Is(err, zip.ErrFormat), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, tar.ErrWriteTooLong):
			return InvalidField("zip_file", "could not unzip %q: %v", e.name, err)
		case err != nil:
			return err
		case n != h.Size:
			return InvalidField("zip_file", "could not unzip %q: it holds %d bytes, not the %d its header says", e.name, n, h.Size)
		case total > MaxUnzippedBytes:
			return InvalidField("zip_file", "the archive's files hold more than %d bytes (250 MB) unzipped", MaxUnzippedBytes)
		}
	}
	return nil
}
