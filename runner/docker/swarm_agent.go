package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
)

// AgentSpec is the node agents' global service.
type AgentSpec struct {
	Name string
	// Binary and Init are static builds of the node agent and of the
	// init, on the server's machine: the service's image holds both.
	Binary, Init string
	// Server is the gateway's address as the nodes reach it.
	Server string
	// Root is the agents' directory on the nodes, under /run: the
	// containers' sockets and the init. Each server has its own, so that
	// two servers' agents on one node never touch each other's.
	Root string
	// TLS is the agents' PEM bundle (the CA, their certificate and key),
	// given to them as a Swarm secret.
	TLS []byte
	// Reap is the label (KEY=VALUE) of the containers the agents remove
	// once they exited: Swarm leaves finished tasks' containers behind.
	Reap   string
	Labels map[string]string
}

// EnsureAgent builds the node agent's image on the manager, pushes it, and
// creates (or updates) the global service that runs it on every node:
// host network, the node's /run at /host/run, where it keeps the
// containers' sockets and the init and finds the node's Docker socket,
// through which it removes the containers of finished tasks.
func (s *Swarm) EnsureAgent(ctx context.Context, a AgentSpec) error {
	if !strings.HasPrefix(a.Root, "/run/") || path.Clean(a.Root) != a.Root {
		return fmt.Errorf("docker: the node agents' root %q is not a clean path under /run", a.Root)
	}
	ctxTar, err := agentContext(a.Binary, a.Init)
	if err != nil {
		return err
	}
	tag := s.opts.Registry + "/minilambda/node-agent:" + a.Name
	resp, err := s.cli.ImageBuild(ctx, ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{LabelManaged: "true"}})
	if err != nil {
		return wrapEngineErr("build the node agent's image", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return wrapEngineErr("build the node agent's image", err)
	}
	img, err := s.inspectImage(ctx, tag)
	if err != nil {
		return err
	}
	ref, err := s.pushed(ctx, img.ID)
	if err != nil {
		return err
	}
	secretName := fmt.Sprintf("%s-tls-%x", a.Name, hash8(a.TLS))
	secretID, err := s.ensureSecret(ctx, secretName, a.TLS, a.Labels)
	if err != nil {
		return err
	}
	labels := maps.Clone(a.Labels)
	labels[LabelManaged] = "true"
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: a.Name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: ref,
				Command: []string{"/minilambda-node-agent", "-server", a.Server, "-root", "/host" + a.Root,
					"-engine", "/host/run/docker.sock", "-reap-label", a.Reap},
				Env:    []string{"MINILAMBDA_NODE={{.Node.Hostname}}"},
				Labels: labels,
				Mounts: []mount.Mount{
					{Type: mount.TypeBind, Source: "/run", Target: "/host/run"},
				},
				Secrets: []*swarm.SecretReference{{SecretID: secretID, SecretName: secretName,
					File: &swarm.SecretReferenceFileTarget{Name: "minilambda-agent-tls", UID: "0", GID: "0", Mode: 0o400}}},
			},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: "host"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
		},
		Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}},
	}
	existing, _, err := s.cli.ServiceInspectWithRaw(ctx, a.Name, swarm.ServiceInspectOptions{})
	switch {
	case err == nil:
		if existing.Spec.TaskTemplate.ContainerSpec != nil && existing.Spec.TaskTemplate.ContainerSpec.Image == ref &&
			slices.Equal(existing.Spec.TaskTemplate.ContainerSpec.Command, spec.TaskTemplate.ContainerSpec.Command) &&
			len(existing.Spec.TaskTemplate.ContainerSpec.Secrets) == 1 && existing.Spec.TaskTemplate.ContainerSpec.Secrets[0].SecretID == secretID {
			return nil
		}
		_, err = s.cli.ServiceUpdate(ctx, existing.ID, existing.Version, spec, swarm.ServiceUpdateOptions{})
		return wrapEngineErr("update the node agents' service", err)
	case isNotFound(err):
		_, err = s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		return wrapEngineErr("create the node agents' service", err)
	}
	return wrapEngineErr("inspect the node agents' service", err)
}

func (s *Swarm) ensureSecret(ctx context.Context, name string, data []byte, labels map[string]string) (string, error) {
	list, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", wrapEngineErr("list secrets", err)
	}
	for _, sec := range list {
		if sec.Spec.Name == name {
			return sec.ID, nil
		}
	}
	labels = maps.Clone(labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManaged] = "true"
	created, err := s.cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}, Data: data})
	if err != nil {
		return "", wrapEngineErr("create the node agents' secret", err)
	}
	return created.ID, nil
}

// agentContext is the build context of the node agent's image: FROM
// scratch, the two static binaries.
func agentContext(binary, init string) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	dockerfile := "FROM scratch\nCOPY minilambda-node-agent minilambda-init /\nENTRYPOINT [\"/minilambda-node-agent\"]\n"
	if err := add("Dockerfile", 0o644, []byte(dockerfile)); err != nil {
		return nil, err
	}
	for name, path := range map[string]string{"minilambda-node-agent": binary, "minilambda-init": init} {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("docker: the node agent's image: %w", err)
		}
		if err := add(name, 0o755, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}
