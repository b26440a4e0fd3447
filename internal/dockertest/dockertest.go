// Package dockertest helps tests that need a real Docker engine: it connects
// (skipping the test when no engine is reachable, failing it under CI=true),
// builds small FROM scratch images from Go programs, gives each test a label
// of its own and checks that no container carrying it is left behind.
//
// Everything it creates is removed by t.Cleanup, and it only ever removes
// what its own test created, so overlapping test runs on one engine do not
// disturb each other.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// TestLabel marks every image this package builds, and is the key of the
// per-test label that [UniqueLabel] returns.
const (
	TestLabel    = "minilambda.test"
	TestRunLabel = "minilambda.test.run"
	// TestBuildLabel carries the tag an image was built for.
	TestBuildLabel = "minilambda.test.build"
)

// timeout bounds each engine call a helper makes.
const timeout = 2 * time.Minute

// Client connects to the engine named by the environment (DOCKER_HOST, or
// the default socket) and pings it. When the engine is unreachable the test
// is skipped, or fails when CI=true. The client is closed at cleanup.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err = cli.Ping(ctx); err != nil {
			cli.Close()
		}
	}
	if err != nil {
		msg := fmt.Sprintf("no Docker engine reachable (DOCKER_HOST=%q): %v", os.Getenv("DOCKER_HOST"), err)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true requires one", msg)
		}
		t.Skipf("%s; skipping a test that needs the engine", msg)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Image is an image built for a test.
type Image struct {
	Tag string // unique to the test: minilambda-test/<name>:<random>
	ID  string // sha256:...
}

// BuildGoImage compiles the Go main package in dir with [GoBinary] and
// builds a FROM scratch image from the binary through the engine's build API,
// labelled minilambda.test=true. No network access is needed. The image is
// removed at cleanup.
func BuildGoImage(t testing.TB, cli *client.Client, dir, name string) Image {
	t.Helper()
	dockerfile := "FROM scratch\nCOPY fn /fn\nENTRYPOINT [\"/fn\"]\n"
	return BuildImage(t, cli, name,
		map[string][]byte{"Dockerfile": []byte(dockerfile)},
		map[string][]byte{"fn": GoBinary(t, dir)})
}

// BuildSample builds a sample function's image the way its README
// instructions do: the Dockerfile in dir, with the Go main package there
// compiled into the build context as "hello".
func BuildSample(t testing.TB, cli *client.Client, dir, name string) Image {
	t.Helper()
	return BuildSampleAs(t, cli, dir, name, "hello")
}

// BuildSampleAs is [BuildSample] with the binary named binary in the
// build context.
func BuildSampleAs(t testing.TB, cli *client.Client, dir, name, binary string) Image {
	t.Helper()
	dockerfile, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return BuildImage(t, cli, name,
		map[string][]byte{"Dockerfile": dockerfile},
		map[string][]byte{binary: GoBinary(t, dir)})
}

// DockerRun times `docker run --rm -i` of image with input on its stdin,
// the baseline the benchmarks compare with. The container carries the
// label key=value.
func DockerRun(t testing.TB, image string, input []byte, key, value string) time.Duration {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("docker", "run", "--rm", "-i", "--label", key+"="+value, image)
	cmd.Stdin = bytes.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	return time.Since(start)
}

// GoBinary compiles the Go main package in dir into a static Linux binary
// (CGO_ENABLED=0, with the go command on PATH, built in t.TempDir()) and
// returns it. Each of set (NAME=VALUE) sets a string variable of it, as
// the linker's -X does.
func GoBinary(t testing.TB, dir string, set ...string) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fn")
	ldflags := "-s -w"
	for _, x := range set {
		ldflags += " -X " + x
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return binary
}

// BuildGoSource is [BuildGoImage] for a one-file program given as source
// text (package main, standard library only).
func BuildGoSource(t testing.TB, cli *client.Client, source, name string) Image {
	t.Helper()
	dockerfile := "FROM scratch\nCOPY fn /fn\nENTRYPOINT [\"/fn\"]\n"
	return BuildImage(t, cli, name,
		map[string][]byte{"Dockerfile": []byte(dockerfile)},
		map[string][]byte{"fn": GoSourceBinary(t, source)})
}

// GoSourceBinary is [GoBinary] for a one-file program given as source
// text (package main, standard library only), in a module of its own.
func GoSourceBinary(t testing.TB, source string) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module testfunction\n\ngo 1.22\n",
		"main.go": source,
	}
	for file, content := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return GoBinary(t, dir)
}

// BuildImage builds an image from an in-memory context: files are added
// with mode 0644 and executables with mode 0755. The context must hold a
// Dockerfile whose base image is present (FROM scratch always is). The tag
// is unique to this call, and the image is removed at cleanup.
func BuildImage(t testing.TB, cli *client.Client, name string, files, executables map[string][]byte) Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(set map[string][]byte, mode int64) {
		for file, content := range set {
			hdr := &tar.Header{Name: file, Mode: mode, Size: int64(len(content)), ModTime: time.Unix(0, 0)}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(content); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(files, 0o644)
	add(executables, 0o755)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	tag := UniqueTag(name)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		// The tag as a label too: every build is an image of its own, so
		// that one test removing its image never takes another's (two
		// builds of the same files would otherwise share one image ID).
		Labels: map[string]string{TestLabel: "true", TestBuildLabel: tag},
	})
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	log, err := readMessages(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build image %s: %v\n%s", tag, err, log)
	}
	RemoveImageAtCleanup(t, cli, tag)
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect built image %s: %v\n%s", tag, err, log)
	}
	return Image{Tag: tag, ID: img.ID}
}

// UniqueTag returns minilambda-test/<name>:<random>.
func UniqueTag(name string) string {
	return "minilambda-test/" + strings.ToLower(sanitize(name)) + ":" + randomHex(6)
}

// RemoveImageAtCleanup removes the image reference (a tag, usually) when the
// test ends. Removing a tag that other tags share only untags it.
func RemoveImageAtCleanup(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", ref, err)
		}
	})
}

// UniqueLabel returns a label (TestRunLabel, a value unique to this call)
// for a test to put on the containers it starts, so that it can check for
// and remove exactly its own.
func UniqueLabel(t testing.TB) (key, value string) {
	return TestRunLabel, sanitize(t.Name()) + "-" + randomHex(6)
}

// RemoveContainers removes every container, in any state, that carries
// the label key=value, as well as it can: for a cleanup that must not fail
// where no engine answers (a server the test killed may have left the
// containers it ran, stopped). It returns how many it removed.
func RemoveContainers(key, value string) int {
	if key == "" || value == "" {
		return 0
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return 0
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", key+"="+value))})
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range list {
		if cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}) == nil {
			n++
		}
	}
	return n
}

// AssertNoContainers fails the test if any container, in any state, carries
// the label key=value, and removes those it finds.
func AssertNoContainers(t testing.TB, cli *client.Client, key, value string) {
	t.Helper()
	if key == "" || value == "" {
		t.Fatal("AssertNoContainers needs a label key and value")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", key+"="+value)),
	})
	if err != nil {
		t.Fatalf("list containers labelled %s=%s: %v", key, value, err)
	}
	for _, c := range list {
		t.Errorf("container %.12s (%s, %s) labelled %s=%s was left behind", c.ID, c.Image, c.State, key, value)
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// readMessages drains a JSON message stream (build, load) and returns its
// text and the first error it reports.
func readMessages(r io.Reader) (string, error) {
	var (
		log strings.Builder
		dec = json.NewDecoder(r)
	)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return log.String(), nil
		} else if err != nil {
			return log.String(), err
		}
		log.WriteString(m.Stream)
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return log.String(), errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return log.String(), errors.New(m.Error)
		}
	}
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
	if len(s) > 48 {
		s = s[:48]
	}
	return strings.Trim(s, "-._")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DebianBase is the Debian bookworm image, with python3, bash and curl,
// that `.ci/python-image --base` makes without a registry: debootstrap from
// the machine's apt mirror, then docker import. It is kept for later runs.
const DebianBase = "minilambda-debian:bookworm"

// debianMu keeps a process's tests from building the image twice at once.
var debianMu sync.Mutex

// DebianImage returns DebianBase, building it first when the engine lacks
// it: that takes root, debootstrap and about a minute. Where it cannot be
// built the test is skipped, or fails under CI=true.
func DebianImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	debianMu.Lock()
	defer debianMu.Unlock()
	if _, err := cli.ImageInspect(context.Background(), DebianBase); err == nil {
		return DebianBase
	}
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	script := filepath.Join(filepath.Dir(strings.TrimSpace(string(mod))), ".ci", "python-image")
	_, lookErr := exec.LookPath("debootstrap")
	if err != nil || os.Geteuid() != 0 || lookErr != nil {
		msg := fmt.Sprintf("%s is missing and cannot be built here (it takes root and debootstrap): run `bash %s --base`", DebianBase, script)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("building %s with %s --base (about a minute)", DebianBase, script)
	if out, err := exec.Command("bash", script, "--base").CombinedOutput(); err != nil {
		t.Fatalf("%s --base: %v\n%s", script, err, out)
	}
	return DebianBase
}
