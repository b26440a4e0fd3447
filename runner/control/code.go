package control

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// Zip packages are built into images here, through the engine: the
// archive's files under /var/task, read-only and owned by root, on the
// runtime's base image. A version freezes the image by ID, so each keeps
// the build it ran; a build's tag names the function and the code, so the
// same code for the same function builds once.

// DefaultRuntimeImages maps the OS-only runtimes to the empty image, which
// serves the static binaries (Go, Rust with musl) they are used for.
func DefaultRuntimeImages() map[string]string {
	return map[string]string{"provided.al2023": function.ScratchImage, "provided.al2": function.ScratchImage, "provided": function.ScratchImage}
}

// Labels put on every image built from a zip package: the base64 SHA-256
// of its archive, and the name of the function it was built for.
const (
	LabelCode         = "minilambda.code"
	LabelCodeFunction = "minilambda.code.function"
)

// runtimeImage is the base image of runtime, or an error about the
// runtime setting that says which flag maps one.
func (c *Plane) runtimeImage(runtime string) (string, error) {
	if err := function.CheckRuntime(runtime, func(r string) bool { _, ok := c.runtimes[r]; return ok }); err != nil {
		return "", fmt.Errorf("%w: %w", function.ErrInvalid, err)
	}
	base, ok := c.runtimes[runtime]
	if !ok {
		return "", function.InvalidField("runtime", "runtime %s has no base image on this server: start it with --runtime-image %s=IMAGE, "+
			"an image in its engine that carries the runtime (AWS's public.ecr.aws/lambda base images do, where a registry is reachable)", runtime, runtime)
	}
	return base, nil
}

// BuildPackage checks spec, the settings of a function deployed as the
// zip archive data on runtime, and the archive, builds the image and
// records its build; it returns spec with the image and the package set,
// for Register or UpdateCode. Nothing is built or recorded when spec or
// the archive is refused.
func (c *Plane) BuildPackage(ctx context.Context, spec function.Spec, runtime string, data []byte) (function.Spec, error) {
	base, err := c.runtimeImage(runtime)
	if err != nil {
		return spec, err
	}
	a, err := function.OpenZip(data)
	if err != nil {
		return spec, err
	}
	if function.ProvidedRuntime(runtime) && !a.Has("bootstrap") {
		return spec, function.InvalidField("zip_file", "runtime %s runs the archive's bootstrap file, and the archive has none at its root", runtime)
	}
	pkg := &function.Package{Runtime: runtime, CodeSha256: a.Sha256, CodeSize: a.Size, BaseImage: base}
	spec.Mode, spec.Package = function.ModeLambda, pkg
	if spec.Image == "" {
		spec.Image = "minilambda-zip/pending:latest" // named below, once the settings are checked
	}
	if _, err := function.Normalize(spec); err != nil {
		return spec, err
	}
	baseID := ""
	if base != function.ScratchImage {
		if baseID, err = c.engine.ImageID(ctx, base); errors.Is(err, engine.ErrImageNotFound) {
			return spec, function.InvalidField("runtime", "runtime %s's base image %q is not in the server's engine: load it with POST /images or docker load first", runtime, base)
		} else if err != nil {
			return spec, err
		}
	}
	dockerfile := packageDockerfile(base, runtime)
	key := sha256.Sum256([]byte(strings.Join([]string{a.Sha256, baseID, dockerfile}, "\n")))
	tag := "minilambda-zip/" + strings.ToLower(spec.Name) + ":" + hex.EncodeToString(key[:8])

	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeBuildContext(pw, dockerfile, a)
		pw.CloseWithError(err)
		written <- err
	}()
	id, err := c.engine.BuildImage(ctx, pr, tag, map[string]string{LabelCode: a.Sha256, LabelCodeFunction: spec.Name})
	pr.CloseWithError(errors.New("the build ended"))
	// The archive's own fault, found as it was read, is the user's, and
	// ended the build.
	if werr := <-written; errors.Is(werr, function.ErrInvalid) {
		return spec, werr
	}
	if err != nil {
		if errors.Is(err, engine.ErrBadImage) {
			return spec, function.InvalidField("zip_file", "the package could not be built into an image: %v", err)
		}
		return spec, err
	}
	e, err := projections.NewImageBuilt(projections.ImageBuilt{Function: spec.Name, Image: tag, ID: id, Package: *pkg})
	if err != nil {
		return spec, err
	}
	// The engine has the image now: record that, even if the client left.
	if _, err := c.log.Append(context.WithoutCancel(ctx), e); err != nil {
		return spec, err
	}
	spec.Image = tag
	return spec, nil
}

// packageDockerfile is the build of a package on base: /var/task holds
// the files; an OS-only runtime runs the package's bootstrap, any other
// the base image's own entrypoint (the runtime interface client of AWS's
// base images), which the runner gives the handler as its command
// (function.Spec.RunCommand), so that a change of handler needs no build.
func packageDockerfile(base, runtime string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s\n", base)
	fmt.Fprintf(&b, "COPY task/ %s/\n", function.TaskRoot)
	fmt.Fprintf(&b, "WORKDIR %s\n", function.TaskRoot)
	if function.ProvidedRuntime(runtime) {
		fmt.Fprintf(&b, "ENTRYPOINT [%q]\n", function.TaskRoot+"/bootstrap")
	}
	return b.String()
}

// writeBuildContext writes the build context: the Dockerfile and the
// archive's files under task/.
func writeBuildContext(w io.Writer, dockerfile string, a *function.Archive) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return err
	}
	if err := a.WriteTar(tw, "task"); err != nil {
		return err
	}
	return tw.Close()
}
