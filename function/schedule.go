package function

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ScheduleSpec is what a user sets on a schedule trigger: when it fires,
// in which time zone, with which event, and what a restart does about the
// firings it missed.
type ScheduleSpec struct {
	// Cron is a cron expression, with seconds optional ("*/5 * * * * *",
	// "0 9 * * 1-5"), or a descriptor ("@every 5m", "@daily"), without a
	// zone of its own (CRON_TZ=, TZ=): the zone is Timezone.
	Cron string `json:"cron"`
	// Timezone is an IANA zone; UTC when empty.
	Timezone string          `json:"timezone,omitempty"`
	Event    json.RawMessage `json:"event,omitempty"`
	// Missed is what the server does at start about the firings that fell
	// due while it was down: "skip" them (the default), or "run_once" for
	// the latest of them. Never a burst.
	Missed string `json:"missed,omitempty"`
}

// Missed-firing policies.
const (
	MissedSkip    = "skip"
	MissedRunOnce = "run_once"
)

// Bounds of a schedule.
const (
	MaxCronLen        = 256
	MaxScheduleEvent  = 256 << 10
	MinScheduleEvery  = time.Second
	MaxSchedulesPerFn = 100
)

// cronParser reads five or six fields (seconds optional) and descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Normalize checks a schedule and fills in its defaults; errors wrap
// ErrInvalid and say what to change.
func (s ScheduleSpec) Normalize() (ScheduleSpec, error) {
	if s.Cron == "" || len(s.Cron) > MaxCronLen {
		return s, InvalidField("cron", "cron must be 1 to %d characters", MaxCronLen)
	}
	// The parser would take a zone from the expression over Timezone, and
	// any zone it loads, Local among them: the zone has its own field.
	if c := strings.ToUpper(strings.TrimSpace(s.Cron)); strings.HasPrefix(c, "CRON_TZ=") || strings.HasPrefix(c, "TZ=") {
		return s, InvalidField("cron", `cron %.60q names a time zone: give it as "timezone" (an IANA zone, such as Asia/Tokyo), and cron without CRON_TZ= or TZ=`, s.Cron)
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	next, err := s.Schedule()
	if err != nil {
		return s, err
	}
	if next(time.Now()).IsZero() {
		return s, InvalidField("cron", "cron %.60q never fires", s.Cron)
	}
	switch s.Missed {
	case "":
		s.Missed = MissedSkip
	case MissedSkip, MissedRunOnce:
	default:
		return s, InvalidField("missed", `missed must be "skip" or "run_once", got %.20q`, s.Missed)
	}
	if len(s.Event) == 0 {
		s.Event = json.RawMessage("{}")
	}
	if len(s.Event) > MaxScheduleEvent || !json.Valid(s.Event) {
		return s, InvalidField("event", "event must be JSON of at most %d bytes", MaxScheduleEvent)
	}
	return s, nil
}

// Schedule is the parsed schedule, in its time zone.
func (s ScheduleSpec) Schedule() (Next func(time.Time) time.Time, err error) {
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil || s.Timezone == "Local" {
		return nil, InvalidField("timezone", "timezone %.40q is not an IANA time zone (such as UTC or Europe/Paris)", s.Timezone)
	}
	// The parser rounds an @every below a second up to one; say so
	// rather than fire at another rate than asked.
	if d, ok := strings.CutPrefix(s.Cron, "@every "); ok {
		if every, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && every < MinScheduleEvery {
			return nil, InvalidField("cron", "cron %.60q fires more often than every %v", s.Cron, MinScheduleEvery)
		}
	}
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return nil, InvalidField("cron", "cron %.60q: %v", s.Cron, err)
	}
	return func(t time.Time) time.Time { return sched.Next(t.In(loc)) }, nil
}
