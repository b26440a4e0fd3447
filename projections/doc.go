// Package projections holds Mini Lambda's read models, the functions and
// invocations views, and the one place that says how each event changes
// them. The views live in the event log's bbolt file and are written by
// [Projector] in the transaction that appends the events, so they never
// drift from the log, and memory does not grow with the number of
// invocations. Nothing else writes them; eventlog rebuilds them from the
// events when their layout version changes, and audit compares them with a
// fresh rebuild.
//
// The package also defines the event types and their payloads, since the
// projector is what gives them meaning.
package projections
