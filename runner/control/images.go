package control

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// LoadImage loads a `docker save` archive into the engine and records
// what it loaded, and which tags it took from other images.
func (c *Plane) LoadImage(ctx context.Context, r io.Reader) (projections.ImageLoaded, error) {
	before, err := c.engine.Images(ctx)
	if err != nil {
		return projections.ImageLoaded{}, err
	}
	tags, err := c.engine.LoadImage(ctx, r)
	if err != nil {
		return projections.ImageLoaded{}, err
	}
	res := projections.ImageLoaded{Loaded: tags}
	if after, err := c.engine.Images(ctx); err == nil {
		for _, tag := range tags {
			if prev, ok := before[tag]; ok && after[tag] != "" && prev != after[tag] {
				res.Replaced = append(res.Replaced, projections.ReplacedTag{Tag: tag, PreviousID: prev, ID: after[tag]})
			}
		}
	}
	e, err := projections.NewImageLoaded(res)
	if err != nil {
		return res, err
	}
	// The engine has the image now: record that, even if the client left.
	if _, err := c.log.Append(context.WithoutCancel(ctx), e); err != nil {
		return res, err
	}
	return res, nil
}

// ListImages lists the image tags the engine has, sorted.
func (c *Plane) ListImages(ctx context.Context) ([]string, error) {
	ids, err := c.engine.Images(ctx)
	if err != nil {
		return nil, err
	}
	tags := make([]string, 0, len(ids))
	for tag := range ids {
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	return tags, nil
}

// ImageID returns the ID of the image ref names in the engine now.
func (c *Plane) ImageID(ctx context.Context, ref string) (string, error) {
	return c.engine.ImageID(ctx, ref)
}

// imageOf is the ID of the image ref names in the engine now. An image the
// engine does not have is the caller's to fix: an error wrapping
// function.ErrInvalid that names it, about the image setting. Nothing is
// ever pulled.
func (c *Plane) imageOf(ctx context.Context, ref string) (string, error) {
	id, err := c.engine.ImageID(ctx, ref)
	if errors.Is(err, engine.ErrImageNotFound) {
		return "", function.InvalidField("image", "image %q is not in the server's engine: load it with POST /images or docker load first", ref)
	}
	return id, err
}

// checkImage refuses to set a function to an image the engine does not
// have: every invocation of it would fail. An engine that cannot be asked
// cannot say, and the image is taken on trust then; an invocation that
// does not find it fails, as one of an image removed later does.
func (c *Plane) checkImage(ctx context.Context, ref string) error {
	if _, err := c.imageOf(ctx, ref); errors.Is(err, function.ErrInvalid) {
		return err
	}
	return nil
}
