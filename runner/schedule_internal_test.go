package runner

import (
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
)

// TestLatestDue finds the latest due instant in a range by bisection,
// however many instants the range holds, and none in an empty one.
func TestLatestDue(t *testing.T) {
	every, _ := function.ScheduleSpec{Cron: "@every 1s", Timezone: "UTC"}.Schedule()
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	until := from.Add(40*24*time.Hour + 500*time.Millisecond) // 3,456,000 instants
	if d, ok := latestDue(every, from, until); !ok || !d.Equal(from.Add(40*24*time.Hour)) {
		t.Errorf("every second for 40 days: %v %v", d, ok)
	}
	if _, ok := latestDue(every, from, from.Add(999*time.Millisecond)); ok {
		t.Error("an instant in less than a second")
	}
	daily, _ := function.ScheduleSpec{Cron: "0 9 * * *", Timezone: "Europe/Paris"}.Schedule()
	if d, ok := latestDue(daily, from, from.Add(72*time.Hour)); !ok || !d.Equal(time.Date(2026, 1, 3, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("9:00 in Paris over three days: %v %v", d, ok)
	}
	never := func(time.Time) time.Time { return time.Time{} }
	if _, ok := latestDue(never, from, until); ok {
		t.Error("a schedule that never fires")
	}
}
