package http

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/minilambda/minilambda/function"
)

// CloudEvents 1.0 over HTTP: an invocation's event may be a CloudEvent in
// structured mode (Content-Type: application/cloudevents+json, the body is
// the event), in binary mode (ce-* headers, the body is its data), or a
// cloud_event member of the JSON body. The function always gets the event
// in its structured JSON form.

const cloudEventsType = "application/cloudevents+json"

// cloudEventAttrs reads the required attributes of a structured
// CloudEvent, which must be a JSON object with string attributes.
func cloudEventAttrs(raw []byte) (function.CloudEventAttrs, error) {
	var a function.CloudEventAttrs
	if err := json.Unmarshal(raw, &a); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return a, badRequest{"CloudEvent attribute " + typeErr.Field + " is not a string"}
		}
		return a, badRequest{"the CloudEvent is not a JSON object"}
	}
	return a, a.Check()
}

// cloudEventRequest reads a request that is a CloudEvent in structured
// or binary mode; ok is false for any other request, whose body it has
// not touched.
func (s *Server) cloudEventRequest(w http.ResponseWriter, r *http.Request) (req function.Request, ok bool, err error) {
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(ctype, "application/cloudevents-batch") {
		return req, true, badRequest{"batched CloudEvents are not supported: send one event per request"}
	}
	binary := r.Header.Get("Ce-Specversion") != ""
	if ctype != cloudEventsType && !binary {
		return req, false, nil
	}
	body, err := s.bodyOf(w, r)
	if err != nil {
		return req, true, wrapBody("the request body", err)
	}
	event := body
	if !binary || ctype == cloudEventsType {
		if !json.Valid(body) {
			return req, true, badRequest{"the structured CloudEvent is not valid JSON"}
		}
	} else if event, err = binaryCloudEvent(r, ctype, body); err != nil {
		return req, true, err
	}
	attrs, err := cloudEventAttrs(event)
	if err != nil {
		return req, true, err
	}
	return function.Request{Event: event, CloudEvent: &attrs}, true, nil
}

// binaryCloudEvent is the structured form of a CloudEvent sent in binary
// mode: its attributes from the ce-* headers, its data from the body.
func binaryCloudEvent(r *http.Request, ctype string, body []byte) ([]byte, error) {
	m := map[string]any{}
	for k, vs := range r.Header {
		name, ok := strings.CutPrefix(strings.ToLower(k), "ce-")
		if !ok || name == "" || len(vs) == 0 {
			continue
		}
		v := vs[0]
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
		m[name] = v
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		m["datacontenttype"] = ct
	}
	jsonData := ctype == "application/json" || strings.HasSuffix(ctype, "+json") || ctype == "text/json"
	switch {
	case len(body) == 0:
	case jsonData && json.Valid(body):
		m["data"] = json.RawMessage(body)
	case jsonData:
		return nil, badRequest{"the CloudEvent's data is declared JSON and is not valid JSON"}
	case utf8.Valid(body):
		m["data"] = string(body)
	default:
		m["data_base64"] = base64.StdEncoding.EncodeToString(body)
	}
	return json.Marshal(m)
}
