package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

type shownSchedule struct {
	ID        string    `json:"id"`
	Cron      string    `json:"cron"`
	Timezone  string    `json:"timezone"`
	Missed    string    `json:"missed"`
	NextRunAt time.Time `json:"next_run_at"`
}

// scheduled lists the invocations of function fn that a schedule fired.
func (s *server) scheduled(fn string) []projections.Invocation {
	s.t.Helper()
	var page struct {
		Invocations []projections.Invocation `json:"invocations"`
	}
	s.call("GET", "/invocations?limit=1000&function="+fn, nil, &page)
	var out []projections.Invocation
	for _, inv := range page.Invocations {
		if inv.ScheduleID != "" && inv.ScheduledAt != nil {
			out = append(out, inv)
		}
	}
	return out
}

// TestSchedules fires a schedule every second, refuses bad expressions
// and zones, computes a schedule's next run in its own zone, stops firing
// once deleted, and across a restart skips or runs once the firings
// missed while the server was down.
func TestSchedules(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-e2e-schedules")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	for _, name := range []string{"tick", "once", "skip"} {
		if code := s.call("POST", "/functions", map[string]any{"name": name, "image": img.Tag}, nil); code != 201 {
			t.Fatalf("register %s: %d", name, code)
		}
	}
	var sc shownSchedule
	if code := s.call("POST", "/functions/tick/schedules", map[string]any{"cron": "* * * * * *", "event": map[string]string{"name": "tick"}}, &sc); code != 201 ||
		sc.ID == "" || sc.Timezone != "UTC" || sc.Missed != "skip" || time.Until(sc.NextRunAt) > 2*time.Second {
		t.Fatalf("create: %d %+v", code, sc)
	}
	for _, bad := range []map[string]any{
		{"cron": "not a cron"}, {"cron": "@every 1s", "timezone": "Mars/Olympus"}, {"cron": "@every 10ms"},
		{"cron": "@daily", "missed": "later"}, {"cron": ""}, {"cron": "@daily", "event": "x", "extra": 1},
	} {
		if code := s.call("POST", "/functions/tick/schedules", bad, nil); code != 400 {
			t.Errorf("%v: %d, want 400", bad, code)
		}
	}
	var tokyo shownSchedule
	if code := s.call("POST", "/functions/skip/schedules", map[string]any{"cron": "0 0 9 * * *", "timezone": "Asia/Tokyo"}, &tokyo); code != 201 ||
		tokyo.NextRunAt.UTC().Hour() != 0 || tokyo.NextRunAt.UTC().Minute() != 0 {
		t.Errorf("9:00 in Tokyo: %d %+v", code, tokyo)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(s.scheduled("tick")) < 3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	fired := s.scheduled("tick")
	if len(fired) < 3 {
		t.Fatalf("%d firings of a schedule every second", len(fired))
	}
	seen := map[time.Time]bool{}
	for _, inv := range fired {
		if inv.ScheduleID != sc.ID || inv.ScheduledAt.Nanosecond() != 0 || seen[*inv.ScheduledAt] || !inv.Async {
			t.Errorf("a firing: %+v", inv)
		}
		seen[*inv.ScheduledAt] = true
	}
	if code := s.call("DELETE", "/functions/tick/schedules/"+sc.ID, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	n := len(s.scheduled("tick"))
	time.Sleep(2500 * time.Millisecond)
	if m := len(s.scheduled("tick")); m != n {
		t.Errorf("%d firings after the schedule was deleted", m-n)
	}

	// Missed firings across a restart.
	for fn, missed := range map[string]string{"once": "run_once", "skip": "skip"} {
		if code := s.call("POST", "/functions/"+fn+"/schedules", map[string]any{"cron": "@every 2s", "missed": missed}, nil); code != 201 {
			t.Fatalf("%s: %d", fn, code)
		}
	}
	time.Sleep(3 * time.Second) // each fires at least once
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(5 * time.Second)
	s = startServer(t, db)
	up := time.Now()
	time.Sleep(1500 * time.Millisecond)
	inDowntime := func(fn string) int {
		n := 0
		for _, inv := range s.scheduled(fn) {
			if inv.ScheduledAt.After(down) && inv.ScheduledAt.Before(up) {
				n++
			}
		}
		return n
	}
	if n := inDowntime("once"); n != 1 {
		t.Errorf("run_once: %d firings for the downtime, want 1", n)
	}
	if n := inDowntime("skip"); n != 0 {
		t.Errorf("skip: %d firings for the downtime, want 0", n)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}
