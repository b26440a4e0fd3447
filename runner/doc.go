// Package runner is the data plane: it runs invocations and appends their
// events; it is what the API submits work to. A [Service] runs sync
// invocations (Invoke), queues async ones (Enqueue), fires schedules, keeps
// hot pools and spares, and recovers after a crash; every step is an event
// in the log, durable before the step it records is answered. It reads
// functions, versions and schedules from the views and never records
// them: the control plane (runner/control) does, and tells the runner when
// a function's containers must go ([Service.Retire]) and when the
// schedules changed ([Service.Reschedule]).
//
// The runner never imports the Docker SDK: it runs containers through an
// engine.Driver (runner/engine), which runner/docker implements for the
// Docker Engine.
//
// # Files
//
//   - service.go: the Service, its options and its life (Start, Stop, Wait);
//   - functions.go: which settings of a function run, and retiring their
//     containers;
//   - admit.go: the one admission of sync and async invocations (the log's
//     writability, the limits, the memory budget) and the room it holds;
//   - invoke.go: a sync invocation; queue.go: the async queue, its workers
//     and the retry of failed attempts; schedule.go: firing schedules;
//   - attempt.go: the one attempt path, shared by both, and the events that
//     end an invocation;
//   - source.go: where an attempt's container comes from, chosen once;
//   - hot.go: hot pools; spare.go: prestarted spares; limits.go: the
//     concurrency limits; budget.go: the memory budget; callback.go:
//     callbacks; record.go: records that must land while the log refuses
//     writes; recover.go: restart recovery.
//
// # One attempt
//
// Every attempt, sync or async, cold or hot, goes through [Service.run]:
// take a container (a hot function's pool, else the function's prestarted
// spare, else a fresh container), record invocation.started once it runs
// with the event, deliver the event and wait for the outcome, then give
// the container back (hot) or prestart the next spare (cold). The caller
// turns the outcome into the event that ends the invocation (sync), or
// into a retry (async).
//
// A sync invocation's invocation.queued event is appended before the
// engine is asked for anything, except with a hot container at hand: then
// it goes in the commit of invocation.started, so that a hot invocation
// costs two fsynced commits, not three.
//
// # Shutdown
//
// Stop ends the workers, lets attempts and callbacks under way finish
// within its context, then cuts them short (each is recorded: attempts as
// failed and retried at the next start, callbacks as not delivered). Wait
// lets sync invocations answer and stops every container.
package runner
