package http

import (
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Event invoke config is the function's async settings: MaximumRetryAttempts
// is max_attempts less one (0 to 2, as Lambda's), MaximumEventAgeInSeconds
// its max_event_age, and DestinationConfig its destinations, a function of
// this server (its ARN or name) or an http(s) URL each. A function has a
// config when it sets any of them.

type lambdaDestination struct {
	Destination *string `json:"Destination,omitempty"`
}

type lambdaDestinationConfig struct {
	OnSuccess *lambdaDestination `json:"OnSuccess,omitempty"`
	OnFailure *lambdaDestination `json:"OnFailure,omitempty"`
}

type lambdaEventConfig struct {
	MaximumRetryAttempts     *int                     `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int                     `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *lambdaDestinationConfig `json:"DestinationConfig"`
}

// hasEventConfig reports whether f sets any of its async settings.
func hasEventConfig(f projections.Function) bool {
	return f.MaxAttempts != 0 || f.MaxEventAge != 0 || f.Destinations != nil
}

func (s *Server) eventConfig(f projections.Function) map[string]any {
	out := map[string]any{"FunctionArn": s.arn(f.Name, function.Latest), "LastModified": float64(f.UpdatedAt.UnixMilli()) / 1000}
	if f.MaxAttempts != 0 {
		out["MaximumRetryAttempts"] = f.MaxAttempts - 1
	}
	if f.MaxEventAge != 0 {
		out["MaximumEventAgeInSeconds"] = f.MaxEventAge
	}
	dc := map[string]any{}
	if d := f.Destinations; d != nil {
		if d.OnSuccess != "" {
			dc["OnSuccess"] = map[string]string{"Destination": d.OnSuccess}
		}
		if d.OnFailure != "" {
			dc["OnFailure"] = map[string]string{"Destination": d.OnFailure}
		}
	}
	out["DestinationConfig"] = dc
	return out
}

// eventConfigPatch is the change b asks of f's async settings: all of
// them when replace (Put), those b names otherwise (Update).
func eventConfigPatch(f projections.Function, b lambdaEventConfig, replace bool) (function.Patch, error) {
	var p function.Patch
	attempts, age := 0, 0
	dests := function.Destinations{}
	if !replace {
		attempts, age = f.MaxAttempts, f.MaxEventAge
		if f.Destinations != nil {
			dests = *f.Destinations
		}
	}
	if r := b.MaximumRetryAttempts; r != nil {
		if *r < 0 || *r > 2 {
			return p, lambdaInvalid("MaximumRetryAttempts must be between 0 and 2, got %d", *r)
		}
		attempts = *r + 1
	}
	if a := b.MaximumEventAgeInSeconds; a != nil {
		age = *a
		if age < function.MinMaxEventAge || age > function.MaxMaxEventAge {
			return p, lambdaInvalid("MaximumEventAgeInSeconds must be between %d and %d, got %d", function.MinMaxEventAge, function.MaxMaxEventAge, age)
		}
	}
	if dc := b.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil {
			dests.OnSuccess = aws.ToString(dc.OnSuccess.Destination)
		}
		if dc.OnFailure != nil {
			dests.OnFailure = aws.ToString(dc.OnFailure.Destination)
		}
	}
	p.MaxAttempts, p.MaxEventAge, p.Destinations = &attempts, &age, &dests
	return p, nil
}

func (s *Server) lambdaPutEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.setEventConfig(w, r, p, true)
}

func (s *Server) lambdaUpdateEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.setEventConfig(w, r, p, false)
}

func (s *Server) setEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params, replace bool) {
	// Put makes one; Update changes the one there is.
	get := s.withEventConfig
	if replace {
		get = func(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
			return s.latestFunction(w, r, p, oneEventConfig)
		}
	}
	f, ok := get(w, r, p)
	if !ok {
		return
	}
	var b lambdaEventConfig
	err := s.lambdaDecode(w, r, &b)
	var patch function.Patch
	if err == nil {
		patch, err = eventConfigPatch(f, b, replace)
	}
	if err == nil {
		f, err = s.opts.Functions.Update(r.Context(), f.ID, patch)
	}
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, s.eventConfig(f))
}

// oneEventConfig refuses an event invoke config operation's qualifier:
// the async settings are the function's $LATEST's.
const oneEventConfig = "a function here has one event invoke config, its $LATEST's: leave the Qualifier out"

// withEventConfig is the function the path names, which must have an
// event invoke config; on an error it has answered.
func (s *Server) withEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
	f, ok := s.latestFunction(w, r, p, oneEventConfig)
	if ok && !hasEventConfig(f) {
		s.writeLambdaError(w, r, lambdaError{http.StatusNotFound, "ResourceNotFoundException", "The function " + s.arn(f.Name) + " doesn't have an EventInvokeConfig"})
		return f, false
	}
	return f, ok
}

func (s *Server) lambdaGetEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	if f, ok := s.withEventConfig(w, r, p); ok {
		writeJSON(w, http.StatusOK, s.eventConfig(f))
	}
}

func (s *Server) lambdaDeleteEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.withEventConfig(w, r, p)
	if !ok {
		return
	}
	patch, _ := eventConfigPatch(f, lambdaEventConfig{}, true)
	if _, err := s.opts.Functions.Update(r.Context(), f.ID, patch); err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lambdaListEventConfigs(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	configs := []map[string]any{}
	if hasEventConfig(f) {
		configs = append(configs, s.eventConfig(f))
	}
	writeJSON(w, http.StatusOK, map[string]any{"FunctionEventInvokeConfigs": configs})
}
