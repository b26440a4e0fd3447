package http

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Schedules keeps functions' schedule triggers.
type Schedules interface {
	CreateSchedule(ctx context.Context, ref string, spec function.ScheduleSpec) (projections.Schedule, error)
	DeleteSchedule(ctx context.Context, ref, id string) error
	Schedules(ref string) ([]projections.Schedule, error)
	NextRun(sc projections.Schedule) time.Time
}

// routeSchedules registers the native API's schedule triggers.
func (s *Server) routeSchedules(r group) {
	r.POST("/functions/:id/schedules", s.createSchedule)
	r.GET("/functions/:id/schedules", s.listSchedules)
	r.DELETE("/functions/:id/schedules/:sid", s.deleteSchedule)
}

// shownSchedule is a schedule with when it fires next.
type shownSchedule struct {
	projections.Schedule
	NextRunAt time.Time `json:"next_run_at"`
}

type scheduleBody struct {
	Cron     string  `json:"cron"`
	Timezone string  `json:"timezone"`
	Event    rawJSON `json:"event"`
	Missed   string  `json:"missed"`
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	var b scheduleBody
	if err := s.decode(w, r, &b, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	sc, err := s.opts.Schedules.CreateSchedule(r.Context(), ref, function.ScheduleSpec{
		Cron: b.Cron, Timezone: b.Timezone, Event: json.RawMessage(b.Event), Missed: b.Missed,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/functions/"+sc.FunctionID+"/schedules/"+sc.ID)
	writeJSON(w, http.StatusCreated, shownSchedule{sc, s.opts.Schedules.NextRun(sc)})
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	list, err := s.opts.Schedules.Schedules(ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]shownSchedule, len(list))
	for i, sc := range list {
		out[i] = shownSchedule{sc, s.opts.Schedules.NextRun(sc)}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	if err := s.opts.Schedules.DeleteSchedule(r.Context(), ref, p.ByName("sid")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
