// Package agent is the server's side of the data plane: every function
// container, in every mode, runs a small init (the init command, a static
// binary) as its first process, and that init alone carries the function's
// data to and from the server, through a socket of the container's own.
// The engine starts, stops and removes containers and reads their state;
// it never copies an event, a result or a log.
//
// Every container gets a socket in a directory of the server that only the
// server's user can reach, bind-mounted into that container alone, and a
// secret of its own, which the init sends first on every connection: a
// connection without it is closed (socket.go; the protocol is in the init
// command's documentation). Then, by mode:
//
//   - cold ([Host.Run], [Host.Prestart]): the init starts the image's
//     entrypoint, writes the event to its stdin and closes it, reads stdout
//     and stderr apart, each bounded by the output limit, and reports the
//     exit code, whether the kernel's OOM killer struck, and both outputs.
//     A prestarted container waits in its init for its event.
//   - hot ([Host.StartHot]): the init writes each event as one line to the
//     function's stdin; when the result line comes on stdout it takes what
//     the stderr pipe holds at that moment, so each invocation's logs are
//     what the function wrote before its result line, with no timing
//     window; what it writes after its result line belongs to no
//     invocation.
//   - lambda ([Host.StartLambda]): the init listens on 127.0.0.1:9001 inside
//     the container, where the runtime finds AWS_LAMBDA_RUNTIME_API, and
//     passes each connection the runtime makes to the server, which serves
//     the Lambda Runtime API (version 2018-06-01) on it (session.go,
//     through the lean HTTP/1.1 server of rapi.go, which reads of a
//     request only what the API and HTTP's framing need); the
//     init collects the runtime's stdout and stderr and hands the server
//     each invocation's share with the runtime's answer.
//
// So a container reaches its own socket and nothing else, with "network":
// "none" too, and every container default holds.
//
// A lambda container's runtime's GET /runtime/invocation/next waits for the
// next invocation the runner gives it; its response or error ends that
// invocation; an init error, an exit of the runtime or of the container
// ends the session, and the runner replaces it. Misuse is answered as
// Lambda answers it: 400 InvalidRequestID for an id that is not the
// invocation in hand (or was answered), 403 InvalidStateTransition for an
// init error after the first event, 413 RequestEntityTooLarge for a payload
// over 6 MiB.
//
// No wait of an invocation outlasts its deadline or its caller: a function
// past its deadline is killed by its init, which still reports the logs
// written until then, and a container whose init does not answer is left
// to the runner, which removes it. A container costs the server a bounded
// number of descriptors, whatever it does to its socket: a connection past
// the bounds is closed as soon as it is accepted, and an accept that fails
// is tried again, so that a socket ends only with its container.
package agent
