package agent_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/runner/agent"
)

// machines maps GOARCH to the ELF machine CheckInit wants.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}

// writeELF writes the headers of a 64-bit ELF executable for machine, with
// a program interpreter (as a dynamically linked one has) when interp is
// set: enough for debug/elf, which is all CheckInit reads.
func writeELF(t *testing.T, path string, machine elf.Machine, interp bool) {
	t.Helper()
	const ehsize, phentsize = 64, 56
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}}
	name := []byte("/lib64/ld-linux.so.2\x00")
	if interp {
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R),
			Off: uint64(ehsize + 2*phentsize), Filesz: uint64(len(name)), Memsz: uint64(len(name)), Align: 1})
	}
	var buf bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Phoff: ehsize, Ehsize: ehsize, Phentsize: phentsize, Phnum: uint16(len(progs)),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&buf, binary.LittleEndian, hdr)
	binary.Write(&buf, binary.LittleEndian, progs)
	if interp {
		buf.Write(name)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
}

// dynamicELF returns an executable of this machine's that is linked
// dynamically.
func dynamicELF(t *testing.T) string {
	t.Helper()
	for _, path := range []string{"/bin/true", "/usr/bin/true", "/bin/ls", "/usr/bin/env"} {
		f, err := elf.Open(path)
		if err != nil {
			continue
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return path
			}
		}
	}
	t.Fatal("found no dynamically linked executable on this machine to check")
	return ""
}

func TestCheckInit(t *testing.T) {
	dir := t.TempDir()
	static := staticInit(t)
	this, ok := machines[runtime.GOARCH]
	if !ok {
		t.Fatalf("no ELF machine known for %s", runtime.GOARCH)
	}
	another := elf.EM_X86_64
	if this == elf.EM_X86_64 {
		another = elf.EM_AARCH64
	}
	file := func(name string, write func(path string)) string {
		path := filepath.Join(dir, name)
		write(path)
		return path
	}
	for _, tc := range []struct {
		name string
		path string
		ok   bool
	}{
		{"a static build of the init", static, true},
		{"a link to it", file("link", func(p string) { os.Symlink(static, p) }), true},
		{"static headers for this machine", file("static", func(p string) { writeELF(t, p, this, false) }), true},
		{"a dynamically linked executable", dynamicELF(t), false},
		{"dynamic headers for this machine", file("dynamic", func(p string) { writeELF(t, p, this, true) }), false},
		{"static headers for another machine", file("foreign", func(p string) { writeELF(t, p, another, false) }), false},
		{"the static build, not executable", file("noexec", func(p string) { copyFile(t, static, p, 0o644) }), false},
		{"a script", file("script", func(p string) { os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755) }), false},
		{"an empty file", file("empty", func(p string) { os.WriteFile(p, nil, 0o755) }), false},
		{"a directory", file("dir", func(p string) { os.Mkdir(p, 0o755) }), false},
		{"nothing", filepath.Join(dir, "missing"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := agent.CheckInit(tc.path)
			switch {
			case tc.ok && err != nil:
				t.Errorf("CheckInit(%s): %v; want it accepted", tc.path, err)
			case !tc.ok && !errors.Is(err, agent.ErrNoInit):
				t.Errorf("CheckInit(%s): %v; want agent.ErrNoInit", tc.path, err)
			}
		})
	}
}

func TestBuildInit(t *testing.T) {
	// A directory that does not exist yet.
	dir := filepath.Join(t.TempDir(), "data", "lambda-init")
	path, err := agent.BuildInit(t.Context(), dir)
	if err != nil {
		t.Fatalf("BuildInit: %v", err)
	}
	if filepath.Dir(path) != dir || !regexp.MustCompile(`^init-[0-9a-f]{16}$`).MatchString(filepath.Base(path)) {
		t.Errorf("BuildInit: %s; want init-HASH in %s", path, dir)
	}
	// Named after the source: the same in every directory.
	if filepath.Base(path) != filepath.Base(staticInit(t)) {
		t.Errorf("build %s, and %s of the same source", filepath.Base(path), filepath.Base(staticInit(t)))
	}
	if err := agent.CheckInit(path); err != nil {
		t.Errorf("CheckInit of the build: %v", err)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("the build left %q in its directory; want the binary alone", got)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory %s: %v, %v; want it made 0700", dir, fi.Mode(), err)
	}

	// A build there already is taken as it is.
	first, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := agent.BuildInit(t.Context(), dir)
	if err != nil || again != path {
		t.Fatalf("BuildInit again: %q, %v; want %q", again, err, path)
	}
	if second, err := os.Stat(again); err != nil || !os.SameFile(first, second) || !second.ModTime().Equal(first.ModTime()) {
		t.Errorf("BuildInit built again over a build it could take")
	}

	// One that is not a build is replaced.
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, filepath.Base(path)), []byte("not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := agent.BuildInit(t.Context(), broken)
	if err != nil || rebuilt != filepath.Join(broken, filepath.Base(path)) {
		t.Fatalf("BuildInit over a broken file: %q, %v", rebuilt, err)
	}
	if err := agent.CheckInit(rebuilt); err != nil {
		t.Errorf("CheckInit of the build that replaced a broken one: %v", err)
	}
}

func TestBuildInitWithoutGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := agent.BuildInit(t.Context(), t.TempDir())
	if !errors.Is(err, agent.ErrNoInit) || !strings.Contains(err.Error(), "Go toolchain") {
		t.Fatalf("BuildInit with no go on PATH: %v; want agent.ErrNoInit saying so", err)
	}
}

// The init refuses a command line it was not given by the host, or a
// secret that is not 32 bytes in hex, and exits when it cannot reach the
// host's socket.
func TestInitCommandLine(t *testing.T) {
	bin := staticInit(t)
	missing := filepath.Join(t.TempDir(), "rapi.sock")
	secret := strings.Repeat("ab", secretLen)
	args := func(mode, socket, limit string, command ...string) []string {
		return append([]string{"-mode", mode, "-socket", socket, "-limit", limit, "--"}, command...)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		secret string
		code   int
		stderr string
	}{
		{"no arguments", nil, secret, 2, "usage: init -mode cold|hot|lambda -socket SOCKET -limit BYTES -- COMMAND"},
		{"an unknown mode", args("warm", missing, "1024", "true"), secret, 2, `unknown mode "warm"`},
		{"no socket", args("cold", "", "1024", "true"), secret, 2, "no socket"},
		{"no command", args("hot", missing, "1024"), secret, 2, "no command"},
		{"a limit of 0", args("cold", missing, "0", "true"), secret, 2, "the limit must be a positive number of bytes"},
		{"a negative limit", args("cold", missing, "-5", "true"), secret, 2, "the limit must be a positive number of bytes"},
		{"a limit that is no number", args("cold", missing, "lots", "true"), secret, 2, "invalid value"},
		{"an unknown flag", []string{"-mode", "cold", "-verbose", "--", "true"}, secret, 2, "usage:"},
		{"no secret", args("lambda", missing, "1024", "true"), "", 2, secretEnv + " must hold 64 hex digits"},
		{"a short secret", args("lambda", missing, "1024", "true"), secret[:62], 2, secretEnv + " must hold 64 hex digits"},
		{"a secret that is no hex", args("lambda", missing, "1024", "true"), strings.Repeat("zz", secretLen), 2, secretEnv + " must hold 64 hex digits"},
		{"no socket there", args("cold", missing, "1024", "true"), secret, 1, "cannot reach the platform"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, tc.args...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if tc.secret != "" {
				cmd.Env = append(cmd.Env, secretEnv+"="+tc.secret)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Fatalf("exit %v; want code %d (stderr %q)", err, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q; want %q", stderr.String(), tc.stderr)
			}
		})
	}
}
