package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// TestPublishedVersions publishes a version of a function, moves its
// image's tag to another image, and checks that version 1 still runs the
// image it froze (sync, async, cold and hot) while $LATEST runs the new
// one; then routes an alias between two versions by weight, and refuses
// what Lambda refuses. The fixture audits the log at cleanup.
func TestPublishedVersions(t *testing.T) {
	cli := dockertest.Client(t)
	a := dockertest.BuildGoImage(t, cli, "../testdata/hot", "minilambda-runner-ver-a")
	// Another build of the same program: an image of its own (each build
	// is labelled with its tag), so the records tell them apart by digest.
	b := dockertest.BuildGoImage(t, cli, "../testdata/hot", "minilambda-runner-ver-b")
	tag := dockertest.UniqueTag("minilambda-runner-ver")
	ctx := context.Background()
	retag := func(img dockertest.Image) {
		t.Helper()
		if err := cli.ImageTag(ctx, img.ID, tag); err != nil {
			t.Fatal(err)
		}
	}
	retag(a)
	dockertest.RemoveImageAtCleanup(t, cli, tag)
	f := newService(t, cli, tag, runner.Options{})
	call := func(fn, qualifier string) projections.Invocation {
		t.Helper()
		inv, err := f.svc.Invoke(ctx, fn, function.Request{Event: json.RawMessage(`{"name": "v"}`), Qualifier: qualifier})
		if err != nil || inv.Status != projections.StatusCompleted {
			t.Fatalf("%s:%s: %v %+v", fn, qualifier, err, inv)
		}
		return inv
	}
	for _, mode := range []function.Mode{function.ModeCold, function.ModeHot} {
		t.Run(string(mode), func(t *testing.T) {
			retag(a)
			fn := f.register(function.Spec{Name: "fn-" + string(mode), Mode: mode})
			v1, err := f.ctl.PublishVersion(ctx, fn.Name, function.Publish{Description: "first"})
			if err != nil || v1.Number != 1 || v1.ImageDigest != a.ID || v1.Image != tag || v1.Revision != 1 {
				t.Fatalf("publish: %v %+v", err, v1)
			}
			// Nothing changed: publishing again gives version 1 back.
			if again, err := f.ctl.PublishVersion(ctx, fn.Name, function.Publish{}); err != nil || again.Number != 1 {
				t.Fatalf("publish again: %v %+v", err, again)
			}
			retag(b)
			if inv := call(fn.Name, ""); inv.ImageDigest != b.ID || inv.ExecutedVersion != function.Latest {
				t.Errorf("$LATEST after the tag moved ran %s (%s), want %s", inv.ImageDigest, inv.ExecutedVersion, b.ID)
			}
			latest := call(fn.Name, function.Latest)
			one := call(fn.Name, "1")
			if one.ImageDigest != a.ID || one.ExecutedVersion != "1" || one.FunctionVersion != 1 {
				t.Errorf("version 1 ran %s as %q, revision %d; want %s", one.ImageDigest, one.ExecutedVersion, one.FunctionVersion, a.ID)
			}
			if mode == function.ModeHot && one.ContainerID == latest.ContainerID {
				t.Errorf("version 1 and $LATEST shared hot container %s", one.ContainerID)
			}
			q, err := f.svc.Enqueue(ctx, fn.Name, function.Request{Qualifier: "1"})
			if err != nil {
				t.Fatal(err)
			}
			if inv := f.settle(q.InvocationID, time.Minute); inv.Status != projections.StatusCompleted || inv.ImageDigest != a.ID || inv.ExecutedVersion != "1" {
				t.Errorf("async version 1: %+v", inv)
			}
			// A change makes a new revision, which publishes as version 2.
			env := map[string]string{"V": "2"}
			if _, err := f.ctl.Update(ctx, fn.Name, function.Patch{Env: &env}); err != nil {
				t.Fatal(err)
			}
			v2, err := f.ctl.PublishVersion(ctx, fn.Name, function.Publish{})
			if err != nil || v2.Number != 2 || v2.ImageDigest != b.ID || v2.Env["V"] != "2" {
				t.Fatalf("publish 2: %v %+v", err, v2)
			}
			if inv := call(fn.Name, "1"); inv.ImageDigest != a.ID {
				t.Errorf("version 1 after an update ran %s", inv.ImageDigest)
			}
		})
	}

	t.Run("aliases", func(t *testing.T) {
		fn := "fn-" + string(function.ModeHot)
		half := function.AliasSpec{FunctionVersion: "1", Weights: map[string]float64{"2": 0.5}}
		if _, err := f.ctl.PutAlias(ctx, fn, "prod", half, true); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for range 24 {
			inv := call(fn, "prod")
			if inv.Alias != "prod" {
				t.Fatalf("alias not on the record: %+v", inv)
			}
			seen[inv.ExecutedVersion]++
		}
		if seen["1"] == 0 || seen["2"] == 0 || len(seen) != 2 {
			t.Errorf("an alias weighted half and half ran %v", seen)
		}
		if _, err := f.ctl.PutAlias(ctx, fn, "prod", half, true); !errors.Is(err, function.ErrConflict) {
			t.Errorf("an alias created twice: %v", err)
		}
		if _, err := f.ctl.PutAlias(ctx, fn, "next", function.AliasSpec{FunctionVersion: "9"}, true); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("an alias of a version never published: %v", err)
		}
		if _, err := f.ctl.PutAlias(ctx, fn, "prod", function.AliasSpec{FunctionVersion: "2"}, false); err != nil {
			t.Fatal(err)
		}
		if inv := call(fn, "prod"); inv.ExecutedVersion != "2" {
			t.Errorf("the updated alias ran %q", inv.ExecutedVersion)
		}
		if err := f.ctl.DeleteAlias(ctx, fn, "prod"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Invoke(ctx, fn, function.Request{Qualifier: "prod"}); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("a deleted alias: %v", err)
		}
		if _, err := f.svc.Invoke(ctx, fn, function.Request{Qualifier: "7"}); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("a version never published: %v", err)
		}
		if _, err := f.svc.Invoke(ctx, fn, function.Request{Qualifier: "bad:name"}); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("a malformed qualifier: %v", err)
		}
	})
}

// TestPublishChecksTheDigestFirst publishes with an ImageDigest that is
// not the image's: nothing is published and nothing appended; with the
// image's digest (as Lambda's CodeSha256, the hex alone) it publishes.
func TestPublishChecksTheDigestFirst(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-digest")
	f := newService(t, cli, img.Tag, runner.Options{})
	ctx := context.Background()
	f.register(function.Spec{Name: "fn"})
	head, _ := f.log.Head()
	wrong := "sha256:" + strings.Repeat("0", 64)
	if v, err := f.ctl.PublishVersion(ctx, "fn", function.Publish{ImageDigest: wrong}); !errors.Is(err, function.ErrInvalid) || !strings.Contains(err.Error(), img.ID) {
		t.Errorf("publish with another digest: %v %+v, want ErrInvalid naming %s", err, v, img.ID)
	}
	if vs, err := f.svc.Views().Versions("fn"); err != nil || len(vs) != 0 {
		t.Errorf("versions after a refused publish: %v %+v", err, vs)
	}
	if now, _ := f.log.Head(); now != head {
		t.Errorf("a refused publish appended %d events", now-head)
	}
	v, err := f.ctl.PublishVersion(ctx, "fn", function.Publish{ImageDigest: strings.TrimPrefix(img.ID, "sha256:"), Description: "one"})
	if err != nil || v.Number != 1 || v.ImageDigest != img.ID || v.Description != "one" {
		t.Fatalf("publish with the image's digest: %v %+v", err, v)
	}
	// Nothing changed since, which returns version 1 when the digest
	// allows it: another digest is still refused.
	if _, err := f.ctl.PublishVersion(ctx, "fn", function.Publish{ImageDigest: wrong}); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("publish again with another digest: %v", err)
	}
}
