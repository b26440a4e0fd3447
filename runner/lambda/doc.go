// Package lambda runs functions written for AWS Lambda, unchanged: it
// serves the Lambda Runtime API (version 2018-06-01) to each container of a
// function in "lambda" mode, and hands the runner each container as an
// [engine.Hot] that takes one invocation at a time.
//
// Every container gets a socket of its own, in a directory of the server
// that only the server's user can reach, bind-mounted read-only into that
// container alone, and a small init (the lambdainit command, a static
// binary) as its first process. The init listens on 127.0.0.1:9001 inside
// the container, where the runtime finds AWS_LAMBDA_RUNTIME_API, and
// carries each request to the socket; it runs the image's own entrypoint as
// its child and collects the child's stdout and stderr, handing the server
// each invocation's share with the runtime's answer. So a container reaches
// its own Runtime API and nothing else, with "network": "none" too, and an
// invocation's request, response and logs go between the container and the
// server directly, never through the engine's attach streams.
//
// The server side of a container is a session: its runtime's
// GET /runtime/invocation/next waits for the next invocation the runner
// gives it; its response or error ends that invocation; an init error, an
// exit of the runtime or of the container ends the session, and the
// runner replaces it. Misuse is answered as Lambda answers it: 400
// InvalidRequestID for an id that is not the invocation in hand (or was
// answered), 403 InvalidStateTransition for an init error after the first
// event, 413 RequestEntityTooLarge for a payload over 6 MiB.
//
// No wait of an invocation outlasts its deadline or its caller: a runtime
// that reported an init error is given a moment to exit, and one that
// lives on is left to the runner, which kills its container. A container
// costs the server a bounded number of descriptors, whatever it does to its
// socket: a connection past the bounds is closed as soon as it is accepted,
// and an accept that fails is tried again, so that a socket ends only with
// its session.
package lambda
