package runner_test

import (
	"context"
	"testing"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner"
)

func TestListImages(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-list")
	f := newService(t, cli, img.Tag, runner.Options{})
	tags, err := f.svc.ListImages(context.Background())
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
