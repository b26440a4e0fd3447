package runner

import (
	"sync/atomic"

	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMemoryBudget bounds the bytes of events and outputs the server
// holds at once (Options.MemoryBudget).
const DefaultMemoryBudget = 512 << 20

// budget counts the large things the server holds in memory: request
// bodies (the API reserves them before it reads them), the event of each
// async attempt under way, and room for every running invocation's stdout
// and stderr. Work that does not fit waits (async) or is refused at once
// (requests), so the heap does not grow with the size of the events.
type budget struct {
	max     int64
	used    atomic.Int64
	gauge   prometheus.Gauge
	refused prometheus.Counter
}

func (b *budget) init(max int64, used prometheus.Gauge, refused prometheus.Counter) {
	b.max, b.gauge, b.refused = max, used, refused
}

// take reserves n bytes if they fit, or if nothing else is reserved: one
// thing larger than the whole budget still gets through, alone.
func (b *budget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used > 0 && used+n > b.max {
			b.refused.Inc()
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			b.gauge.Set(float64(used + n))
			return true
		}
	}
}

// give returns n bytes that take reserved.
func (b *budget) give(n int64) {
	b.gauge.Set(float64(b.used.Add(-n)))
}

// Reserve takes n bytes of the memory budget for a request the API is
// about to read (its body), or says ErrBusy; Release gives them back.
// These are the API's names (http.Budget); an invocation's room is its
// admission's (admit.go).
func (s *Service) Reserve(n int64) error {
	if s.budget.take(n) {
		return nil
	}
	return s.budgetBusy()
}

// Release gives back what Reserve took.
func (s *Service) Release(n int64) { s.budget.give(n) }

// outputRoom is what an invocation's outputs may come to: its stdout and
// stderr, or a lambda function's response and logs.
func (s *Service) outputRoom(f projections.Function) int64 {
	if f.Lambda() {
		return agent.MaxPayload + s.opts.OutputLimit
	}
	return 2 * s.opts.OutputLimit
}
