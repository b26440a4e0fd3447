// Package docker is the runner's driver for the Docker Engine, and the
// only package that imports the Docker SDK. [Docker] implements
// engine.Driver; the SDK sits behind dockerAPI, an unexported interface
// listing only the calls this package makes.
//
// # One invocation, one container
//
// [Docker.Run] executes one cold invocation from start to finish:
//
//  1. resolve the image (ImageInspect); the image ID ("sha256:...") is what is
//     reported as the digest, because tags move and the ID is what actually ran;
//  2. create a container with the image's own ENTRYPOINT/CMD (never a shell, so
//     FROM scratch images work), stdin open for one attach, no TTY, the safe
//     defaults below and the labels minilambda.managed=true,
//     minilambda.function=<id> and minilambda.invocation=<id>;
//  3. attach to stdin, stdout and stderr and register a "next-exit" wait,
//     both before the container starts, so no output and no exit is missed;
//  4. start it, call the OnStart callback (where the runner records a durable
//     "started" event), write the event to stdin and close stdin;
//  5. demultiplex stdout (the result) and stderr (the logs) into buffers that
//     keep at most Spec.OutputLimit bytes each;
//  6. wait for the exit, the timeout, the output limit or the caller hanging
//     up, whichever comes first, killing the container in all but the first;
//  7. inspect the exit code and whether the kernel's OOM killer struck;
//  8. remove the container (forcibly, with its anonymous volumes).
//
// [Docker.Prestart] does steps 1 to 3 and the start ahead of time, for one
// later invocation that delivers its event and goes on from step 4. Hot
// containers ([Docker.StartHot]) are created, attached and started once
// and take one event per line; they are removed when closed.
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
// limit ([PidsLimit]), a memory limit (the function's default unless the Spec
// says otherwise) with swap disabled, an optional CPU quota, no mounts, the
// "bridge" network unless the Spec asks for "none" or a named network (never
// "host"), and the "none" logging driver: output reaches the driver through
// the attach stream only, so nothing is written to the engine's disk.
//
// # The engine connection
//
// A [Docker] holds a *client.Client, which opens connections on demand and
// negotiates the API version on first successful contact. Nothing about a dead
// engine is cached: while the engine is down calls fail with
// engine.ErrEngineUnavailable, and they succeed again once it is back, without
// restarting the process.
package docker
