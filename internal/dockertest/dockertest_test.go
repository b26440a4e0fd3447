package dockertest_test

import (
	"context"
	"testing"

	"github.com/docker/docker/client"

	"github.com/minilambda/minilambda/internal/dockertest"
)

func TestBuildGoSource(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoSource(t, cli, "package main\n\nfunc main() {}\n", "Empty Program")
	info, err := cli.ImageInspect(context.Background(), img.Tag)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != img.ID || info.Config == nil || info.Config.Labels[dockertest.TestLabel] != "true" {
		t.Errorf("image %s: ID %s (want %s), config %+v", img.Tag, info.ID, img.ID, info.Config)
	}
	if len(info.Config.Entrypoint) != 1 || info.Config.Entrypoint[0] != "/fn" {
		t.Errorf("entrypoint %q, want [/fn]", info.Config.Entrypoint)
	}
}

func TestProxy(t *testing.T) {
	cli := dockertest.Client(t)
	p := dockertest.NewProxy(t, cli)
	through, err := newClient(p.Host())
	if err != nil {
		t.Fatal(err)
	}
	defer through.Close()
	ctx := context.Background()
	if _, err := through.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	p.Stop()
	if _, err := through.Ping(ctx); err == nil {
		t.Fatal("ping through a stopped proxy succeeded")
	}
	p.Start()
	if _, err := through.Ping(ctx); err != nil {
		t.Fatalf("ping through the restarted proxy: %v", err)
	}
}

func newClient(host string) (*client.Client, error) {
	return client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
}
