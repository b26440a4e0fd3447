package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// PublishVersion freezes function ref's current settings and the digest
// of the image its tag names now as its next numbered version. Publishing
// again with nothing changed returns the newest version, as Lambda does.
// A request whose ImageDigest is not that image's publishes nothing.
func (c *Plane) PublishVersion(ctx context.Context, ref string, p function.Publish) (projections.Version, error) {
	if err := p.Check(); err != nil {
		return projections.Version{}, err
	}
	f, err := c.views.Function(ref)
	if err != nil {
		return projections.Version{}, err
	}
	digest, err := c.imageOf(ctx, f.Image)
	if err != nil {
		if errors.Is(err, function.ErrInvalid) {
			err = fmt.Errorf("%w; a version freezes the image it names", err)
		}
		return projections.Version{}, err
	}
	// A zip package's code hash is its archive's, as Lambda's.
	if pkg := f.Package; pkg != nil && !p.AllowsCode(pkg.CodeSha256) {
		return projections.Version{}, fmt.Errorf("%w: function %s's code is %s now, not %s: nothing was published",
			function.ErrInvalid, f.Name, pkg.CodeSha256, p.ImageDigest)
	} else if pkg == nil && !p.Allows(digest) {
		return projections.Version{}, fmt.Errorf("%w: function %s's image %q is %s now, not %s: nothing was published",
			function.ErrInvalid, f.Name, f.Image, digest, p.ImageDigest)
	}
	versions, err := c.views.Versions(f.ID)
	if err != nil {
		return projections.Version{}, err
	}
	if n := len(versions); n > 0 && versions[n-1].Revision == f.Version && versions[n-1].ImageDigest == digest {
		return versions[n-1], nil
	}
	number := len(versions) + 1
	e, err := projections.NewVersionPublished(f.ID, projections.VersionPublished{
		Number: number, Revision: f.Version, Spec: f.Spec, ImageDigest: digest, Description: p.Description,
	})
	if err != nil {
		return projections.Version{}, err
	}
	if _, err := c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		cur, err := projections.FunctionByRef(r, f.ID)
		if err == nil && cur.Version != f.Version {
			err = fmt.Errorf("%w: function %s changed meanwhile; try again", function.ErrConflict, f.Name)
		}
		if _, verr := projections.PublishedVersion(r, f.ID, number); err == nil && verr == nil {
			err = fmt.Errorf("%w: version %d of function %s was published meanwhile; try again", function.ErrConflict, number, f.Name)
		}
		return err
	}, e); err != nil {
		return projections.Version{}, err
	}
	return c.views.Version(f.ID, number)
}

// PutAlias creates alias name of function ref (create) or changes it.
func (c *Plane) PutAlias(ctx context.Context, ref, name string, spec function.AliasSpec, create bool) (projections.Alias, error) {
	if err := function.CheckAliasName(name); err != nil {
		return projections.Alias{}, fmt.Errorf("%w: %v", function.ErrInvalid, err)
	}
	if err := spec.Check(); err != nil {
		return projections.Alias{}, err
	}
	f, err := c.views.Function(ref)
	if err != nil {
		return projections.Alias{}, err
	}
	e, err := projections.NewAliasSet(f.ID, create, projections.AliasSet{Name: name, AliasSpec: spec})
	if err != nil {
		return projections.Alias{}, err
	}
	if _, err := c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if _, err := projections.FunctionByRef(r, f.ID); err != nil {
			return err
		}
		for _, v := range append([]string{spec.FunctionVersion}, slices.Collect(maps.Keys(spec.Weights))...) {
			if projections.CheckVersionRef(r, f.ID, v) != nil {
				return fmt.Errorf("%w: function %s has no published version %s", function.ErrInvalid, f.Name, v)
			}
		}
		_, err := projections.AliasOf(r, f.ID, name)
		switch {
		case create && err == nil:
			return fmt.Errorf("%w: function %s has an alias %q already", function.ErrConflict, f.Name, name)
		case !create && err != nil:
			return err
		}
		return nil
	}, e); err != nil {
		return projections.Alias{}, err
	}
	return c.views.Alias(f.ID, name)
}

// DeleteAlias removes alias name of function ref.
func (c *Plane) DeleteAlias(ctx context.Context, ref, name string) error {
	f, err := c.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewAliasDeleted(f.ID, name)
	if err != nil {
		return err
	}
	_, err = c.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.AliasOf(r, f.ID, name)
		return err
	}, e)
	return err
}
