// Package metrics defines Mini Lambda's Prometheus metrics on a registry of
// its own, so that tests and several servers in one process never collide.
package metrics

import (
	"github.com/minilambda/minilambda/eventlog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's instruments. The zero value is not usable; call
// New.
type Metrics struct {
	Registry *prometheus.Registry

	Invocations   *prometheus.CounterVec   // by function and final status
	Duration      *prometheus.HistogramVec // by function: from container start to exit
	InFlight      prometheus.Gauge
	Starts        *prometheus.CounterVec // by kind: cold or warm
	CommitLatency prometheus.Histogram
	CommitEvents  prometheus.Histogram
	CommitCPU     prometheus.Counter // the log writer's CPU seconds
	CommitPages   prometheus.Counter // pages the log's commits wrote
	QueueDepth    prometheus.Gauge
	Retries       prometheus.Counter
	HotContainers *prometheus.GaugeVec
	Overhead      *prometheus.HistogramVec // by mode: cold or hot
	BudgetUsed    prometheus.Gauge         // bytes of the memory budget reserved
	BudgetRefused prometheus.Counter       // reservations that did not fit
	Unwritable    prometheus.Counter       // commits the log's file refused
}

// New registers the metrics, plus Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "minilambda_invocations_total",
			Help: "Invocations that ended, by function name and status (COMPLETED or FAILED) and error type.",
		}, []string{"function", "status", "error_type"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "minilambda_invocation_duration_seconds",
			Help: "Time from a function's container start to its exit.",
			// 1 ms to 5 min.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"function"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "minilambda_invocations_in_flight",
			Help: "Invocations running now.",
		}),
		Starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "minilambda_container_starts_total",
			Help: "Invocations by how their container was had: cold (created for it), prestarted (started ahead for it) or warm (a hot container already running).",
		}, []string{"kind"}),
		CommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "minilambda_eventlog_commit_seconds",
			Help:    "Latency of event log commits, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		CommitEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "minilambda_eventlog_commit_events",
			Help:    "Events per event log commit (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		CommitCPU: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "minilambda_eventlog_commit_cpu_seconds_total",
			Help: "CPU time the event log's writer spent in its commits (Linux; divide by minilambda_eventlog_commit_seconds_count for the CPU of a commit).",
		}),
		CommitPages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "minilambda_eventlog_commit_pages_total",
			Help: "Pages of the event log's file its commits wrote.",
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "minilambda_async_queue_depth",
			Help: "Async invocations waiting for a worker or for their next attempt.",
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "minilambda_async_retries_total",
			Help: "Async attempts that failed and were scheduled again.",
		}),
		HotContainers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "minilambda_hot_containers",
			Help: "Hot containers of a function, idle and busy.",
		}, []string{"function"}),
	}
	m.Overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "minilambda_invocation_overhead_seconds",
		Help: "Time a synchronous invocation spent in the platform beyond its function's own run (container start to exit, or event sent to result line): log commits, container handling, waiting for logs.",
		// 100 µs to 3.3 s.
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"mode"})
	m.BudgetUsed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "minilambda_memory_budget_used_bytes",
		Help: "Bytes of the memory budget reserved: request bodies being handled, async events being run, room for running invocations' outputs.",
	})
	m.BudgetRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "minilambda_memory_budget_refusals_total",
		Help: "Requests answered 429, and async attempts put off, because the memory budget was in use.",
	})
	m.Unwritable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "minilambda_eventlog_append_failures_total",
		Help: "Commits of the event log that its file refused (a full disk, an I/O error); what they held is appended again once it can be.",
	})
	m.Registry.MustRegister(m.Invocations, m.Duration, m.InFlight, m.Starts, m.CommitLatency, m.CommitEvents, m.CommitCPU, m.CommitPages, m.QueueDepth, m.Retries, m.HotContainers, m.Overhead,
		m.BudgetUsed, m.BudgetRefused, m.Unwritable,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Commit records one event log commit; it fits eventlog.Options.OnCommit.
func (m *Metrics) Commit(c eventlog.CommitStats) {
	m.CommitLatency.Observe(c.Duration.Seconds())
	m.CommitEvents.Observe(float64(c.Events))
	m.CommitCPU.Add(c.CPU.Seconds())
	m.CommitPages.Add(float64(c.Pages))
}

// CommitRefused counts a commit the log's file refused; it fits
// eventlog.Options.OnUnwritable.
func (m *Metrics) CommitRefused(error) { m.Unwritable.Inc() }
