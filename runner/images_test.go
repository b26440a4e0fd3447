package runner_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner"
)

func TestListImages(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-list")
	f := newService(t, cli, img.Tag, runner.Options{})
	tags, err := f.ctl.ListImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, tag := range tags {
		found = found || tag == img.Tag
		if tag == "<none>:<none>" || tag == "" {
			t.Errorf("ListImages lists %q", tag)
		}
		if i > 0 && tags[i-1] >= tag {
			t.Errorf("ListImages not sorted and unique at %d: %q, %q", i, tags[i-1], tag)
		}
	}
	if !found {
		t.Errorf("ListImages = %q, lacks %q", tags, img.Tag)
	}
}

// TestFunctionImagesMustBeInTheEngine registers and updates functions
// with images the engine does not have: each is refused (ErrInvalid, the
// message naming the image) and appends nothing. An image the engine lost
// after the function took it is not checked again by an update that
// leaves it alone.
func TestFunctionImagesMustBeInTheEngine(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-absent")
	f := newService(t, cli, img.Tag, runner.Options{})
	ctx := context.Background()
	absent := dockertest.UniqueTag("minilambda-runner-never-built")
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, function.ErrInvalid) || !strings.Contains(err.Error(), absent) {
			t.Errorf("%s: %v, want ErrInvalid naming %s", what, err, absent)
		}
	}
	head, _ := f.log.Head()
	for _, mode := range []function.Mode{function.ModeCold, function.ModeHot, function.ModeLambda} {
		_, err := f.ctl.Register(ctx, function.Spec{Name: "absent-" + string(mode), Image: absent, Mode: mode})
		refused("register "+string(mode), err)
	}
	fn := f.register(function.Spec{Name: "fn"})
	after, _ := f.log.Head()
	if after != head+1 {
		t.Errorf("the refused registrations appended %d events", after-head-1)
	}
	_, err := f.ctl.Update(ctx, "fn", function.Patch{Image: &absent})
	refused("update", err)
	if now, _ := f.log.Head(); now != after {
		t.Errorf("the refused update appended %d events", now-after)
	}
	if cur, err := f.svc.Views().Function("fn"); err != nil || cur.Image != img.Tag || cur.Version != fn.Version {
		t.Errorf("after a refused update: %v %+v", err, cur)
	}

	gone := dockertest.UniqueTag("minilambda-runner-gone")
	if err := cli.ImageTag(ctx, img.ID, gone); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageAtCleanup(t, cli, gone)
	f.register(function.Spec{Name: "lost", Image: gone})
	if _, err := cli.ImageRemove(ctx, gone, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	timeout := 7
	if got, err := f.ctl.Update(ctx, "lost", function.Patch{Timeout: &timeout}); err != nil || got.Timeout != 7 || got.Image != gone {
		t.Errorf("an update that keeps an image the engine lost: %v %+v", err, got)
	}
	if _, err := f.ctl.Update(ctx, "lost", function.Patch{Image: &img.Tag}); err != nil {
		t.Errorf("an update back to an image the engine has: %v", err)
	}
}
