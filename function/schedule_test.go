package function_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
)

func TestScheduleSpec(t *testing.T) {
	base := time.Date(2026, 11, 27, 8, 59, 30, 0, time.UTC)
	for _, c := range []struct {
		spec function.ScheduleSpec
		next time.Time
	}{
		{function.ScheduleSpec{Cron: "*/10 * * * * *"}, base.Add(10 * time.Second)},
		{function.ScheduleSpec{Cron: "0 9 * * *"}, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
		{function.ScheduleSpec{Cron: "0 9 * * *", Timezone: "Europe/Paris"}, time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)},
		{function.ScheduleSpec{Cron: "@daily"}, time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)},
		{function.ScheduleSpec{Cron: "@every 5m"}, base.Add(5 * time.Minute)},
	} {
		s, err := c.spec.Normalize()
		if err != nil {
			t.Fatalf("%+v: %v", c.spec, err)
		}
		next, _ := s.Schedule()
		if got := next(base); !got.Equal(c.next) {
			t.Errorf("%+v: next %v, want %v", c.spec, got, c.next)
		}
		if s.Missed != function.MissedSkip || string(s.Event) != "{}" || s.Timezone == "" {
			t.Errorf("defaults: %+v", s)
		}
	}
	for _, bad := range []function.ScheduleSpec{
		{}, {Cron: "61 * * * *"}, {Cron: "@every 500ms"}, {Cron: "@hourly", Timezone: "Nowhere/City"}, {Cron: "@hourly", Timezone: "Local"},
		{Cron: "@hourly", Missed: "all"}, {Cron: "@hourly", Event: []byte("{")},
	} {
		if _, err := bad.Normalize(); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestScheduleZoneIsItsField: an expression that names a zone of its own
// (which the parser would honour over the timezone, Local among them) is
// refused, and says where the zone goes.
func TestScheduleZoneIsItsField(t *testing.T) {
	for _, bad := range []function.ScheduleSpec{
		{Cron: "CRON_TZ=Asia/Tokyo 0 9 * * *", Timezone: "Europe/Paris"},
		{Cron: "CRON_TZ=Asia/Tokyo 0 9 * * *"},
		{Cron: "TZ=Asia/Tokyo 0 9 * * *", Timezone: "Asia/Tokyo"},
		{Cron: "CRON_TZ=Local 0 9 * * *"},
		{Cron: "TZ=UTC"}, // the parser panics on a zone with nothing after it
		{Cron: "CRON_TZ=UTC @every 1h"},
		{Cron: " cron_tz=UTC 0 9 * * *"},
	} {
		_, err := bad.Normalize()
		if !errors.Is(err, function.ErrInvalid) || !strings.Contains(fmt.Sprint(err), `give it as "timezone"`) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
