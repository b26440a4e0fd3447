package function

import (
	"strings"
)

// Destinations are where the record of an async invocation goes once it
// has ended: as Lambda's event invoke config's OnSuccess and OnFailure.
// Each is another function of this server, by name or function ARN (with
// a version or alias, or none), which is invoked async with Lambda's
// destination record as its event; or an http(s) URL the record is
// POSTed to, as a callback is, to a host the operator allows.
type Destinations struct {
	OnSuccess string `json:"on_success,omitempty"`
	OnFailure string `json:"on_failure,omitempty"`
}

// Bounds of a function's maximum event age, as Lambda's.
const (
	MinMaxEventAge = 60
	MaxMaxEventAge = 21600
	// MaxDestinationDepth bounds a chain of invocations each a
	// destination's of the one before, as Lambda stops recursive loops:
	// functions that name each other cannot run forever.
	MaxDestinationDepth = 16
)

// DestinationOf marks an invocation as the destination of another's end:
// that invocation, the condition (Lambda's: Success, RetriesExhausted,
// EventAgeExceeded) and the chain's depth, 1 for the first.
type DestinationOf struct {
	InvocationID string `json:"invocation_id"`
	Condition    string `json:"condition"`
	Depth        int    `json:"depth"`
}

// Destination is one destination, parsed.
type Destination struct {
	// Function and Qualifier name a function of this server; URL is set
	// instead for a URL.
	Function  string
	Qualifier string
	URL       string
}

// ParseDestination reads a destination: a URL, a function ARN or a name,
// either with :qualifier. field names the setting in errors.
func ParseDestination(field, s string) (Destination, error) {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		if err := CheckCallbackURL(s); err != nil {
			return Destination{}, fieldErr(field, "%s %q must be an http or https URL", field, s)
		}
		return Destination{URL: s}, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" {
		parts = parts[6:]
	}
	d := Destination{Function: parts[0]}
	switch len(parts) {
	case 1:
	case 2:
		d.Qualifier = parts[1]
		if d.Qualifier == "" {
			return Destination{}, fieldErr(field, "%s %.80q has an empty qualifier", field, s)
		}
		if _, err := ParseQualifier(d.Qualifier); err != nil {
			return Destination{}, fieldErr(field, "%s %.80q: %v", field, s, err)
		}
	default:
		return Destination{}, fieldErr(field, "%s %.80q is not a function (a name, name:qualifier or function ARN) nor an http(s) URL", field, s)
	}
	if err := CheckName(d.Function); err != nil {
		return Destination{}, fieldErr(field, "%s %.80q is not a function (a name, name:qualifier or function ARN) nor an http(s) URL", field, s)
	}
	return d, nil
}

// checkDestinations checks both destinations.
func checkDestinations(d *Destinations) error {
	for field, s := range map[string]string{"destinations.on_success": d.OnSuccess, "destinations.on_failure": d.OnFailure} {
		if s == "" {
			continue
		}
		if _, err := ParseDestination(field, s); err != nil {
			return err
		}
	}
	return nil
}
