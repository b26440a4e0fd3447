package function

import "strings"

// CloudEventAttrs are a CloudEvent's required attributes, which an
// invocation record keeps.
type CloudEventAttrs struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Type        string `json:"type"`
}

// maxCloudEventAttr bounds each required attribute.
const maxCloudEventAttr = 1024

// Check says what is missing or wrong in a CloudEvent 1.0's required
// attributes, as a 400.
func (a CloudEventAttrs) Check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"specversion", a.SpecVersion}, {"id", a.ID}, {"source", a.Source}, {"type", a.Type}} {
		switch {
		case f.v == "":
			missing = append(missing, f.name)
		case len(f.v) > maxCloudEventAttr:
			return invalid("CloudEvent attribute %s is longer than %d bytes", f.name, maxCloudEventAttr)
		}
	}
	if len(missing) > 0 {
		return invalid("the CloudEvent lacks its required attribute(s) %s", strings.Join(missing, ", "))
	}
	if a.SpecVersion != "1.0" {
		return invalid("CloudEvent specversion %.20q: only 1.0 is supported", a.SpecVersion)
	}
	return nil
}

// String names the event as logs show it.
func (a CloudEventAttrs) String() string { return a.Type + " " + a.ID + " from " + a.Source }
