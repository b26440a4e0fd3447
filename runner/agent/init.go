package agent

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// initSource is the init's program, which the server builds when it is
// given no build of it: the server binary itself is often linked
// dynamically (cgo is on wherever a C compiler is), and a container image
// has no C library to offer it.
//
//go:embed init/main.go
var initSource []byte

// ErrNoInit means no static build of the init could be found or made.
var ErrNoInit = errors.New("agent: no init binary for function containers")

// BuildInit returns a static build of the init in dir, building it with the
// Go toolchain (CGO_ENABLED=0, no network) when dir has no build of this
// source yet. Builds are named after the source's hash, so a server with
// another init never uses this one.
func BuildInit(ctx context.Context, dir string) (string, error) {
	return buildStatic(ctx, dir, "init", initSource, "`CGO_ENABLED=0 go build -o minilambda-init ./runner/agent/init` and pass --init")
}

// nodeAgentSource is the node agent's program (the nodeagent command),
// which the server builds for the image of a cluster's node agents.
//
//go:embed nodeagent/main.go
var nodeAgentSource []byte

// BuildNodeAgent returns a static build of the node agent in dir, as
// BuildInit does for the init.
func BuildNodeAgent(ctx context.Context, dir string) (string, error) {
	return buildStatic(ctx, dir, "node-agent", nodeAgentSource, "a machine with the Go toolchain")
}

// goVersions are the language versions of the programs: the node agent
// asks the standard library for HTTP/2 alone.
var goVersions = map[string]string{"init": "1.22", "node-agent": "1.24"}

// buildStatic builds the one-file program source, named name, in dir.
func buildStatic(ctx context.Context, dir, name string, source []byte, instead string) (string, error) {
	sum := sha256.Sum256(append([]byte(runtime.GOARCH+"\n"), source...))
	path := filepath.Join(dir, name+"-"+hex.EncodeToString(sum[:8]))
	if err := CheckInit(path); err == nil {
		return path, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: the Go toolchain is not on PATH to build one; use %s", ErrNoInit, instead)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	src, err := os.MkdirTemp(dir, name+"-src-")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), source, 0o600); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module minilambda"+strings.ReplaceAll(name, "-", "")+"\n\ngo "+goVersions[name]+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	out := filepath.Join(src, "init")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	// The standard library only: nothing to download, whatever the
	// environment says.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOPROXY=off", "GOTOOLCHAIN=local", "GO111MODULE=on")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: go build: %v: %s", ErrNoInit, err, strings.TrimSpace(string(msg)))
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	return path, CheckInit(path)
}

// PlaceInit copies the init given into dir, once per content, and returns
// the copy's path. Containers bind-mount the init from the engine's host,
// and dir is where the server keeps its state: a server that runs in a
// container of its own shares that directory with the host (at the same
// path), while the init it was given is in its own filesystem.
func PlaceInit(given, dir string) (string, error) {
	if err := CheckInit(given); err != nil {
		return "", err
	}
	b, err := os.ReadFile(given)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	sum := sha256.Sum256(b)
	path := filepath.Join(dir, "init-given-"+hex.EncodeToString(sum[:8]))
	if err := CheckInit(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	tmp, err := os.CreateTemp(dir, "init-copy-")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	return path, CheckInit(path)
}

// CheckInit says whether path is an init the containers can run: an
// executable, statically linked ELF file for this machine's architecture.
func CheckInit(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoInit, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s is not an executable file", ErrNoInit, path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoInit, path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is linked dynamically and cannot run in an image without its C library; "+
				"build it with CGO_ENABLED=0", ErrNoInit, path)
		}
	}
	if want, ok := elfMachines[runtime.GOARCH]; ok && f.Machine != want {
		return fmt.Errorf("%w: %s is built for %v, not %s", ErrNoInit, path, f.Machine, runtime.GOARCH)
	}
	return nil
}

var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}
