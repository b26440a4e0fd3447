package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/minilambda/minilambda/runner/engine"
)

// PidsLimit caps the processes and threads of every container.
const PidsLimit = 256

// Internal bounds on the steps that run detached from the caller's context.
const (
	createTimeout  = 60 * time.Second
	inspectTimeout = 30 * time.Second
	// pingTimeout bounds the check of whether the engine is still there.
	pingTimeout = 5 * time.Second
)

// containerConfig is the container for s, created from the image ID. s has
// been normalized.
func containerConfig(s engine.Spec, imageID string) (*container.Config, *container.HostConfig) {
	env := make([]string, 0, len(s.Env)+len(s.WrapEnv))
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+s.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.WrapEnv)) {
		env = append(env, k+"="+s.WrapEnv[k])
	}
	labels := make(map[string]string, len(s.Labels)+3)
	maps.Copy(labels, s.Labels)
	labels[LabelManaged] = "true"
	labels[LabelFunction] = s.FunctionID
	labels[LabelInvocation] = s.InvocationID

	memory := int64(s.MemoryMB) << 20
	pids := int64(PidsLimit)
	config := &container.Config{
		Image:  imageID,
		Env:    env,
		Labels: labels,
		// Nil Entrypoint and Cmd: the image's own run. Setting an
		// entrypoint drops the image's command, as docker run does.
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		WorkingDir: s.WorkingDir,
	}
	hostConfig := &container.HostConfig{
		NetworkMode: container.NetworkMode(s.Network),
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		Privileged:  false,
		// Output reaches the server through the init only.
		LogConfig:      container.LogConfig{Type: "none"},
		ReadonlyRootfs: s.ReadOnly,
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory, // no swap
			NanoCPUs:   int64(s.CPUs * 1e9),
			PidsLimit:  &pids,
		},
	}
	if s.ReadOnly {
		hostConfig.Tmpfs = map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=64m"}
	}
	for _, m := range s.Mounts {
		hostConfig.Mounts = append(hostConfig.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: true})
	}
	return config, hostConfig
}

// containerName names a container after its invocation, with a random
// suffix so that a retried invocation never collides with its first attempt.
func containerName(invocationID string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return -1
	}, invocationID)
	if len(clean) > 64 {
		clean = clean[:64]
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	if clean == "" {
		return "minilambda-" + hex.EncodeToString(suffix[:])
	}
	return "minilambda-" + clean + "-" + hex.EncodeToString(suffix[:])
}

// runErr wraps an engine error, or the context's error when the caller's
// context is what ended the call. An error that does not tell by itself
// whether the engine is still there (a stream cut short) is checked with a
// ping.
func (d *Docker) runErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("runner: %s: invocation abandoned: %w", op, ctxErr)
	}
	if !isUnavailable(err) {
		pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		if _, pingErr := d.api.Ping(pingCtx); pingErr != nil && (isUnavailable(pingErr) || pingCtx.Err() != nil) {
			return fmt.Errorf("%w: %s: %w", engine.ErrEngineUnavailable, op, err)
		}
	}
	return wrapEngineErr(op, err)
}

// wrappedCommand is the entrypoint of a container of s whose init wraps
// the command: the wrapper, then the image's entrypoint and command, or
// the function's own, which replace the image's as in containerConfig.
// Setting an entrypoint drops the image's command, so both follow the
// wrapper as its arguments.
func wrappedCommand(s engine.Spec, img image.InspectResponse) []string {
	var entrypoint, cmd []string
	if img.Config != nil {
		entrypoint, cmd = img.Config.Entrypoint, img.Config.Cmd
	}
	if len(s.Entrypoint) > 0 {
		entrypoint, cmd = s.Entrypoint, nil
	}
	if len(s.Cmd) > 0 {
		cmd = s.Cmd
	}
	return slices.Concat(s.Wrap, entrypoint, cmd)
}
