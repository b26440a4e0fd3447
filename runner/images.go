package runner

import (
	"context"
	"io"
	"slices"

	"github.com/minilambda/minilambda/projections"
)

// LoadImage loads a `docker save` archive into the engine and records
// what it loaded, and which tags it took from other images.
func (s *Service) LoadImage(ctx context.Context, r io.Reader) (projections.ImageLoaded, error) {
	before, err := s.engine.Images(ctx)
	if err != nil {
		return projections.ImageLoaded{}, err
	}
	tags, err := s.engine.LoadImage(ctx, r)
	if err != nil {
		return projections.ImageLoaded{}, err
	}
	res := projections.ImageLoaded{Loaded: tags}
	if after, err := s.engine.Images(ctx); err == nil {
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
	if _, err := s.log.Append(context.WithoutCancel(ctx), e); err != nil {
		return res, err
	}
	return res, nil
}

// ListImages lists the image tags the engine has, sorted.
func (s *Service) ListImages(ctx context.Context) ([]string, error) {
	ids, err := s.engine.Images(ctx)
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
func (s *Service) ImageID(ctx context.Context, ref string) (string, error) {
	return s.engine.ImageID(ctx, ref)
}
