// Package runner runs Mini Lambda functions as Docker containers. It is the
// only package that imports the Docker SDK.
//
// # One invocation, one container
//
// [Docker.Run] executes one invocation from start to finish:
//
//  1. resolve the image (ImageInspect); the image ID ("sha256:...") is what is
//     reported as the digest, because tags move and the ID is what actually ran;
//  2. create a container with the image's own ENTRYPOINT/CMD (never a shell, so
//     FROM scratch images work), stdin open for one attach, no TTY, the safe
//     defaults below and the labels minilambda.managed=true,
//     minilambda.function=<id> and minilambda.invocation=<id>;
//  3. attach to stdin, stdout and stderr and register a "next-exit" wait,
//     both before the container starts, so no output and no exit is missed;
//  4. start it, call [Spec.OnStart] (where the caller records a durable
//     "started" event), write the event to stdin and close stdin;
//  5. demultiplex stdout (the result) and stderr (the logs) into buffers that
//     keep at most [Spec.OutputLimit] bytes each;
//  6. wait for the exit, the timeout, the output limit or the caller hanging
//     up, whichever comes first, killing the container in all but the first;
//  7. inspect the exit code and whether the kernel's OOM killer struck;
//  8. remove the container (forcibly, with its anonymous volumes).
//
// Step 8 runs on every path: success, function failure, timeout, output limit,
// a cancelled context and engine errors. It uses a context detached from the
// caller's (context.WithoutCancel) with its own deadline, so a client that
// hangs up still gets its container removed. Containers left behind by a crash
// of the whole process are found by their labels: [Docker.RemoveManaged].
//
// # Safe by default
//
// Every container drops all capabilities, runs with no-new-privileges, a PID
// limit ([PidsLimit]), a memory limit ([DefaultMemoryMB] unless the Spec says
// otherwise) with swap disabled, an optional CPU quota, no mounts, the
// "bridge" network unless the Spec asks for "none" or a named network (never
// "host"), and the "none" logging driver: output reaches the runner through
// the attach stream only, so nothing is written to the engine's disk.
//
// # Failures
//
// A function that exits non-zero, is OOM-killed, times out or floods its
// output is not an error of Run: it is a [Result] that says so
// ([Result.ErrorType]). Run returns an error only when the platform could not
// do its part: [ErrImageNotFound], [ErrEngineUnavailable], [ErrInvalidSpec],
// an error from [Spec.OnStart], a cancelled context, or another engine error.
//
// # The engine connection
//
// A [Docker] holds a *client.Client, which opens connections on demand and
// negotiates the API version on first successful contact. Nothing about a dead
// engine is cached: while the engine is down calls fail with
// [ErrEngineUnavailable], and they succeed again once it is back, without
// restarting the process.
package runner
