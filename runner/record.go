package runner

import (
	"context"
	"errors"
	"time"

	"github.com/minilambda/minilambda/eventlog"
)

// While the log cannot be written (a full disk), what has happened must
// still reach it once it can: an invocation that ran has an end to record,
// a queued invocation that could not start must start later. Nothing is
// dropped, and nothing is left RUNNING without a way to its end.

// Backoff of persist while the log refuses appends.
const (
	persistFirst = 100 * time.Millisecond
	persistMax   = 5 * time.Second
)

// persist appends events, trying again while the log is unwritable, until
// they land or ctx ends: ctx bounds the trying, never an append under way.
func (s *Service) persist(ctx context.Context, events ...eventlog.Event) ([]eventlog.Event, error) {
	wait := persistFirst
	for {
		got, err := s.log.Append(context.WithoutCancel(ctx), events...)
		if err == nil || !errors.Is(err, eventlog.ErrUnwritable) {
			return got, err
		}
		if wait == persistFirst {
			s.logger.Warn("the event log cannot be written; trying again until it can",
				"type", events[0].Type, "invocation_id", events[0].InvocationID, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, persistMax)
	}
}

// persistLater appends events in the background, trying until they land or
// the service's life ends (a restart's recovery then settles what they
// would have), and then calls then, when set: for a sync invocation whose
// caller has had its answer, or a recovery decision.
func (s *Service) persistLater(then func(), events ...eventlog.Event) {
	s.recording.Add(1)
	go func() {
		defer s.recording.Done()
		if _, err := s.persist(s.life, events...); err != nil {
			s.logger.Error("an event was not recorded", "type", events[0].Type, "invocation_id", events[0].InvocationID, "err", err)
			return
		}
		if then != nil {
			then()
		}
	}()
}

// LogHealth reports whether the event log takes appends; see
// eventlog.Log.Writable.
func (s *Service) LogHealth() error { return s.log.Writable() }
