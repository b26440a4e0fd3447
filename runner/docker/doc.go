// Package docker is the runner's driver for the Docker Engine, and the
// only package that imports the Docker SDK. [Docker] implements
// engine.Driver on one engine; the SDK sits behind dockerAPI, an
// unexported interface listing only the calls this package makes.
// [Swarm] implements it on a Docker Swarm cluster (swarm.go): each
// container is a one-task service, its image pushed to the cluster's
// registry and pulled by digest, and the node agents' global service is
// made here too.
//
// # Containers, not data
//
// The driver creates, starts, stops and removes containers and reads their
// state; a function's data never goes through the engine. [Docker.StartDetached]
// starts every function container, in every mode:
//
//  1. resolve the image (ImageInspect); the image ID ("sha256:...") is what is
//     reported as the digest, because tags move and the ID is what actually ran;
//  2. create a container from that ID with the Spec's wrapper (the init) as its
//     entrypoint, followed by the image's own ENTRYPOINT/CMD (never a shell, so
//     FROM scratch images work), no stdin, no TTY, no attach, the safe defaults
//     below and the labels minilambda.managed=true, minilambda.function=<id>
//     and minilambda.invocation=<id>;
//  3. register a "next-exit" wait before the start, so that no exit is
//     missed, and start it.
//
// The init reaches the server through the socket mounted into the container
// (runner/agent), which carries events, results and logs. The container is
// removed (forcibly, with its anonymous volumes) when it is closed, on every
// path: success, function failure, timeout, output limit, a cancelled context
// and engine errors, with a context detached from the caller's
// (context.WithoutCancel) and a deadline of its own, so a client that hangs up
// still gets its container removed. Containers left behind by a crash of the
// whole process are found by their labels: [Docker.RemoveManaged].
//
// # Safe by default
//
// Every container drops all capabilities, runs with no-new-privileges, a PID
// limit ([PidsLimit]), a memory limit (the function's default unless the Spec
// says otherwise) with swap disabled, an optional CPU quota, no mounts, the
// "bridge" network unless the Spec asks for "none" or a named network (never
// "host"), and the "none" logging driver: output reaches the server through
// the init only, so nothing is written to the engine's disk.
//
// # The engine connection
//
// A [Docker] holds a *client.Client, which opens connections on demand and
// negotiates the API version on first successful contact. Nothing about a dead
// engine is cached: while the engine is down calls fail with
// engine.ErrEngineUnavailable, and they succeed again once it is back, without
// restarting the process.
package docker
