package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/runner/engine"
)

// wrapEngineErr prefixes err with the operation that failed and, when the
// engine could not be reached at all, wraps ErrEngineUnavailable too.
func wrapEngineErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if isUnavailable(err) {
		return fmt.Errorf("%w: %s: %w", engine.ErrEngineUnavailable, op, err)
	}
	return fmt.Errorf("runner: %s: %w", op, err)
}

// isUnavailable reports whether err means that the engine could not be
// reached, as opposed to an answer from the engine or a cancelled context.
func isUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if client.IsErrConnectionFailed(err) {
		return true
	}
	// The hijacked connections of attach don't go through the client's
	// error mapping: look for a failed dial underneath.
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// isNotFound reports whether the engine answered that the object is absent.
func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
