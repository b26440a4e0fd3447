package projections

import (
	"bytes"
	"encoding/json"
)

// Redact takes out of an event's data the secrets the API never shows: the
// HMAC secret of a function's HTTP trigger, in the payloads that carry a
// function's settings (function.registered, function.updated,
// function.version_published). It returns the data without them and the
// paths of what it took, from the event's top ("data.http_trigger.hmac_secret"),
// or data itself and no paths when there was nothing to take. The event's
// hash stays the stored one's, which a client can no longer recompute.
func Redact(eventType string, data []byte) ([]byte, []string) {
	switch eventType {
	case TypeFunctionRegistered, TypeFunctionUpdated, TypeVersionPublished:
	default:
		return data, nil
	}
	// function.Spec is embedded in each: its http_trigger is a member of
	// the payload's top object.
	if !bytes.Contains(data, []byte(`"hmac_secret"`)) {
		return data, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return data, nil
	}
	var t map[string]json.RawMessage
	if json.Unmarshal(m["http_trigger"], &t) != nil || t["hmac_secret"] == nil {
		return data, nil
	}
	delete(t, "hmac_secret")
	var err error
	if m["http_trigger"], err = json.Marshal(t); err != nil {
		return data, nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return data, nil
	}
	return out, []string{"data.http_trigger.hmac_secret"}
}
