package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/runner/engine"
)

// maxLoadResponse bounds how much of the engine's answer to an image load is
// read: it is a few progress lines per image.
const maxLoadResponse = 4 << 20

// loadMessage is one line of the JSON message stream of an image load.
type loadMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// LoadImage loads a `docker save` archive into the engine and returns what
// it loaded: the tags ("Loaded image: name:tag") and, for images saved
// without a tag, their IDs ("Loaded image ID: sha256:..."). An archive the
// engine cannot load is an error wrapping engine.ErrBadImage.
func (d *Docker) LoadImage(ctx context.Context, r io.Reader) ([]string, error) {
	resp, err := d.api.ImageLoad(ctx, r, client.ImageLoadWithQuiet(false))
	if err != nil {
		if isUnavailable(err) || ctx.Err() != nil {
			return nil, wrapEngineErr("load image", err)
		}
		// The engine answered with an error status before streaming: it
		// could not read the archive.
		return nil, fmt.Errorf("%w: %w", engine.ErrBadImage, err)
	}
	defer resp.Body.Close()

	var (
		loaded []string
		body   = io.LimitReader(resp.Body, maxLoadResponse)
	)
	record := func(line string) {
		line = strings.TrimSpace(line)
		for _, prefix := range []string{"Loaded image: ", "Loaded image ID: "} {
			if name, ok := strings.CutPrefix(line, prefix); ok {
				loaded = append(loaded, strings.TrimSpace(name))
				return
			}
		}
	}
	if resp.JSON {
		dec := json.NewDecoder(body)
		for {
			var m loadMessage
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, wrapEngineErr("load image: read response", err)
			}
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				return nil, fmt.Errorf("%w: %s", engine.ErrBadImage, m.ErrorDetail.Message)
			}
			if m.Error != "" {
				return nil, fmt.Errorf("%w: %s", engine.ErrBadImage, m.Error)
			}
			for line := range strings.Lines(m.Stream) {
				record(line)
			}
		}
	} else {
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			record(sc.Text())
		}
		if err := sc.Err(); err != nil {
			return nil, wrapEngineErr("load image: read response", err)
		}
	}
	if len(loaded) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no image", engine.ErrBadImage)
	}
	return loaded, nil
}

// BuildImage builds an image from buildContext, a tar with a Dockerfile
// at its root, tags it and returns its ID. Nothing is pulled: the build's
// base images must be in the engine (or be scratch), else it fails, as
// does any step, with an error wrapping engine.ErrBadImage that carries
// the engine's message. The build's intermediate containers are removed
// whatever happens.
func (d *Docker) BuildImage(ctx context.Context, buildContext io.Reader, tag string, labels map[string]string) (string, error) {
	resp, err := d.api.ImageBuild(ctx, buildContext, build.ImageBuildOptions{
		Tags: []string{tag}, Labels: labels, Remove: true, ForceRemove: true, PullParent: false,
		Version: build.BuilderV1,
	})
	if err != nil {
		if isUnavailable(err) || ctx.Err() != nil {
			return "", wrapEngineErr("build image", err)
		}
		return "", fmt.Errorf("%w: %w", engine.ErrBadImage, err)
	}
	defer resp.Body.Close()
	// The build's answer is a stream of JSON messages; a failed step is an
	// error message in it, the status is 200 all the same.
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxLoadResponse))
	for {
		var m loadMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", wrapEngineErr("build image: read response", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return "", fmt.Errorf("%w: %s", engine.ErrBadImage, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return "", fmt.Errorf("%w: %s", engine.ErrBadImage, m.Error)
		}
	}
	img, err := d.inspectImage(ctx, tag)
	return img.ID, err
}

// Images maps each repo tag in the engine to the ID of its image, without
// the "<none>:<none>" of untagged images.
func (d *Docker) Images(ctx context.Context) (map[string]string, error) {
	list, err := d.api.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, wrapEngineErr("list images", err)
	}
	ids := map[string]string{}
	for _, img := range list {
		for _, tag := range img.RepoTags {
			if tag != "" && tag != "<none>:<none>" {
				ids[tag] = img.ID
			}
		}
	}
	return ids, nil
}

// ImageID returns the ID of the image ref names now: the image that will
// run, whatever the tag points at later.
func (d *Docker) ImageID(ctx context.Context, image string) (string, error) {
	img, err := d.inspectImage(ctx, image)
	return img.ID, err
}

// inspectImage returns what the engine knows of the image a reference
// names.
func (d *Docker) inspectImage(ctx context.Context, ref string) (image.InspectResponse, error) {
	img, err := d.api.ImageInspect(ctx, ref)
	if err != nil {
		switch {
		case isNotFound(err):
			return img, fmt.Errorf("%w: %q", engine.ErrImageNotFound, ref)
		case cerrdefs.IsInvalidArgument(err):
			return img, fmt.Errorf("%w: image %q: %w", engine.ErrInvalidSpec, ref, err)
		}
		return img, d.runErr(ctx, "inspect image", err)
	}
	return img, nil
}
