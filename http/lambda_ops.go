package http

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The Lambda operations deploy tools call beside the functions' own, each
// mapped onto what the platform has: account settings onto the server's
// limits, reserved concurrency onto a function's concurrency, tags onto
// the function's tags, and InvokeWithResponseStream onto a sync
// invocation whose response goes out in the event-stream framing.

// routeLambdaOps registers them, under their own date prefixes.
func (s *Server) routeLambdaOps(r group) {
	r.GET("/2016-08-19/account-settings", s.lambdaAccountSettings)
	r.GET("/2016-08-19/account-settings/", s.lambdaAccountSettings)
	r.PUT("/2017-10-31/functions/:name/concurrency", s.lambdaPutConcurrency)
	r.DELETE("/2017-10-31/functions/:name/concurrency", s.lambdaDeleteConcurrency)
	r.GET("/2019-09-30/functions/:name/concurrency", s.lambdaGetConcurrency)
	r.POST("/2017-03-31/tags/:name", s.lambdaTag)
	r.DELETE("/2017-03-31/tags/:name", s.lambdaUntag)
	r.GET("/2017-03-31/tags/:name", s.lambdaListTags)
	r.POST("/2021-11-15/functions/:name/response-streaming-invocations", s.lambdaInvokeStream)
	const url = "/2021-10-31/functions/:name/url"
	r.POST(url, s.lambdaCreateURL)
	r.GET(url, s.lambdaGetURL)
	r.PUT(url, s.lambdaUpdateURL)
	r.DELETE(url, s.lambdaDeleteURL)
	r.GET("/2021-10-31/functions/:name/urls", s.lambdaListURLs)
	const eic = "/2019-09-25/functions/:name/event-invoke-config"
	r.PUT(eic, s.lambdaPutEventConfig)
	r.POST(eic, s.lambdaUpdateEventConfig)
	r.GET(eic, s.lambdaGetEventConfig)
	r.DELETE(eic, s.lambdaDeleteEventConfig)
	r.GET(eic+"/list", s.lambdaListEventConfigs)
}

// lambdaAccountSettings is GetAccountSettings: the server's own limits
// and what its functions use of them. The code size has no limit here.
func (s *Server) lambdaAccountSettings(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fns, err := s.opts.Views.Functions()
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	var codeSize int64
	reserved := 0
	for _, f := range fns {
		reserved += f.Concurrency
		if f.Package != nil {
			codeSize += f.Package.CodeSize
		}
		vs, err := s.opts.Versions.Versions(f.ID)
		if err != nil {
			s.writeLambdaError(w, r, err)
			return
		}
		for _, v := range vs {
			if v.Package != nil {
				codeSize += v.Package.CodeSize
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"AccountLimit": map[string]any{
			"TotalCodeSize": int64(math.MaxInt64), "CodeSizeZipped": function.MaxZipBytes, "CodeSizeUnzipped": function.MaxUnzippedBytes,
			"ConcurrentExecutions": s.opts.MaxInFlight, "UnreservedConcurrentExecutions": max(0, s.opts.MaxInFlight-reserved),
		},
		"AccountUsage": map[string]any{"TotalCodeSize": codeSize, "FunctionCount": len(fns)},
	})
}

// concurrencyOf is Lambda's shape of a function's reserved concurrency:
// none when the function has no limit of its own.
func concurrencyOf(f projections.Function) map[string]int {
	if f.Concurrency == 0 {
		return map[string]int{}
	}
	return map[string]int{"ReservedConcurrentExecutions": f.Concurrency}
}

// lambdaPutConcurrency is PutFunctionConcurrency: the function's
// concurrency, the most of its invocations that run at once. Unlike
// Lambda's it reserves nothing from other functions, and 0 (Lambda's
// "throttle every invocation") is refused.
func (s *Server) lambdaPutConcurrency(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		Reserved *int `json:"ReservedConcurrentExecutions"`
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	switch {
	case b.Reserved == nil:
		s.writeLambdaError(w, r, lambdaInvalid("ReservedConcurrentExecutions is required"))
		return
	case *b.Reserved < 1:
		s.writeLambdaError(w, r, lambdaInvalid("ReservedConcurrentExecutions must be at least 1: this server has no throttled state; DeleteFunctionConcurrency lifts the function's own limit"))
		return
	case s.opts.MaxInFlight > 0 && *b.Reserved > s.opts.MaxInFlight:
		s.writeLambdaError(w, r, lambdaInvalid("ReservedConcurrentExecutions %d is more than the server runs at once (%d, its --max-in-flight)", *b.Reserved, s.opts.MaxInFlight))
		return
	}
	f, ok := s.setConcurrency(w, r, p, *b.Reserved)
	if ok {
		writeJSON(w, http.StatusOK, concurrencyOf(f))
	}
}

func (s *Server) lambdaDeleteConcurrency(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	if _, ok := s.setConcurrency(w, r, p, 0); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) lambdaGetConcurrency(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	if f, ok := s.lambdaFunction(w, r, p); ok {
		writeJSON(w, http.StatusOK, concurrencyOf(f))
	}
}

// setConcurrency sets the concurrency of the function the path names; on
// an error it has answered.
func (s *Server) setConcurrency(w http.ResponseWriter, r *http.Request, p httprouter.Params, n int) (projections.Function, bool) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return f, false
	}
	if f.Concurrency == n {
		return f, true
	}
	f, err := s.opts.Functions.Update(r.Context(), f.ID, function.Patch{Concurrency: &n})
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return f, false
	}
	return f, true
}

// taggedFunction is the function a tag operation's resource ARN names:
// a function, never one of its versions or aliases, as Lambda.
func (s *Server) taggedFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
	ref, qualifier, err := lambdaName(r, p)
	if err == nil && qualifier != "" {
		err = lambdaInvalid("tags are a function's: name the function's ARN, without a version or alias")
	}
	if err != nil {
		s.writeLambdaError(w, r, err)
		return projections.Function{}, false
	}
	f, err := s.opts.Views.Function(ref)
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(ref, err))
		return f, false
	}
	return f, true
}

func (s *Server) lambdaTag(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		Tags map[string]string `json:"Tags"`
	}
	f, ok := s.taggedFunction(w, r, p)
	if !ok {
		return
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	if len(b.Tags) == 0 {
		s.writeLambdaError(w, r, lambdaInvalid("Tags is required, with at least one tag"))
		return
	}
	if _, err := s.opts.Functions.Tag(r.Context(), f.ID, b.Tags, nil); err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lambdaUntag(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.taggedFunction(w, r, p)
	if !ok {
		return
	}
	keys := r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		s.writeLambdaError(w, r, lambdaInvalid("tagKeys is required, with at least one key"))
		return
	}
	if _, err := s.opts.Functions.Tag(r.Context(), f.ID, nil, keys); err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lambdaListTags(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	if f, ok := s.taggedFunction(w, r, p); ok {
		writeJSON(w, http.StatusOK, map[string]any{"Tags": tagsOf(f)})
	}
}

// tagsOf is a function's tags, never null.
func tagsOf(f projections.Function) map[string]string {
	if f.Tags == nil {
		return map[string]string{}
	}
	return f.Tags
}

// streamChunk is the most of a response one PayloadChunk event carries.
const streamChunk = 64 << 10

// lambdaInvokeStream is InvokeWithResponseStream: a sync invocation whose
// response goes out as application/vnd.amazon.eventstream, the framing
// the SDKs decode: the function's response in PayloadChunk events, then
// an InvokeComplete event, which carries the error of a failed invocation
// and, asked for, the tail of its logs. The response is whole before the
// first chunk goes: functions here answer at once, not in parts.
func (s *Server) lambdaInvokeStream(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, qualifier, err := lambdaName(r, p)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	body, err := s.bodyOf(w, r)
	if err != nil {
		s.writeLambdaError(w, r, wrapBody("the request payload", err))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		s.writeLambdaError(w, r, lambdaError{http.StatusBadRequest, "InvalidRequestContentException", "could not parse request body into json: the payload is not JSON"})
		return
	}
	switch typ := r.Header.Get("X-Amz-Invocation-Type"); typ {
	case "", "RequestResponse":
	case "DryRun":
		if _, _, err := s.qualified(ref, qualifier); err != nil {
			s.writeLambdaError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		s.writeLambdaError(w, r, lambdaInvalid("X-Amz-Invocation-Type %.40q: use RequestResponse or DryRun", typ))
		return
	}
	inv, err := s.opts.Invoker.Invoke(r.Context(), ref, function.Request{Event: json.RawMessage(body), Qualifier: qualifier, TraceID: traceOf(r)})
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(ref, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/vnd.amazon.eventstream")
	h.Set("X-Amzn-Requestid", inv.InvocationID)
	h.Set("X-Trace-Id", inv.TraceID)
	h.Set("X-Amz-Executed-Version", inv.ExecutedVersion)
	w.WriteHeader(http.StatusOK)

	enc := eventstream.NewEncoder()
	event := func(typ, contentType string, payload []byte) error {
		return enc.Encode(w, eventstream.Message{Headers: eventstream.Headers{
			{Name: ":message-type", Value: eventstream.StringValue("event")},
			{Name: ":event-type", Value: eventstream.StringValue(typ)},
			{Name: ":content-type", Value: eventstream.StringValue(contentType)},
		}, Payload: payload})
	}
	complete := map[string]string{}
	if inv.Status == projections.StatusCompleted {
		for rest := []byte(inv.Result); len(rest) > 0; {
			n := min(len(rest), streamChunk)
			if err := event("PayloadChunk", "application/octet-stream", rest[:n]); err != nil {
				return // the client went away
			}
			rest = rest[n:]
		}
	} else {
		var doc struct {
			Message string `json:"errorMessage"`
			Type    string `json:"errorType"`
		}
		detail := functionError(inv)
		json.Unmarshal(detail, &doc)
		complete["ErrorCode"] = doc.Type
		complete["ErrorDetails"] = strings.TrimSpace(string(detail))
		if complete["ErrorCode"] == "" {
			complete["ErrorCode"] = "Unhandled"
		}
	}
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		logs := inv.Logs
		if len(logs) > tailBytes {
			logs = logs[len(logs)-tailBytes:]
		}
		complete["LogResult"] = base64.StdEncoding.EncodeToString([]byte(logs))
	}
	doc, _ := json.Marshal(complete)
	if err := event("InvokeComplete", "application/json", doc); err != nil {
		s.log.Debug("the stream's client went away", "invocation_id", inv.InvocationID, "err", fmt.Sprint(err))
	}
}

// Function URLs are the function's HTTP trigger (docs/triggers.md): its
// URL is /hooks/{name}/ on this server, AuthType NONE its auth "none" and
// AWS_IAM its auth "aws_iam", SigV4 with the server's key pair. A trigger
// the native API gave "token" or "hmac" auth shows as MINILAMBDA_TOKEN or
// MINILAMBDA_HMAC. CORS is not configured here: a function's own response
// sets its headers.

type lambdaURLBody struct {
	AuthType   *string         `json:"AuthType"`
	Cors       json.RawMessage `json:"Cors"`
	InvokeMode string          `json:"InvokeMode"`
}

// urlFunction is the function a function URL operation names, which
// must be unqualified: a function has one URL, its $LATEST's.
func (s *Server) urlFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
	ref, qualifier, err := lambdaName(r, p)
	if err == nil && qualifier != "" && qualifier != function.Latest {
		err = lambdaInvalid("a function here has one URL, its $LATEST's: leave the Qualifier out")
	}
	if err != nil {
		s.writeLambdaError(w, r, err)
		return projections.Function{}, false
	}
	f, err := s.opts.Views.Function(ref)
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(ref, err))
		return f, false
	}
	return f, true
}

// urlAuth maps an AuthType to a trigger's auth.
func urlAuth(authType string) (string, error) {
	switch authType {
	case "NONE":
		return function.TriggerAuthNone, nil
	case "AWS_IAM":
		return function.TriggerAuthAWSIAM, nil
	}
	return "", lambdaInvalid("AuthType %.40q: NONE or AWS_IAM", authType)
}

// decodeURLBody reads a function URL's settings, refusing what this
// server does not do.
func (s *Server) decodeURLBody(w http.ResponseWriter, r *http.Request) (lambdaURLBody, error) {
	var b lambdaURLBody
	if err := s.lambdaDecode(w, r, &b); err != nil {
		return b, err
	}
	if c := strings.TrimSpace(string(b.Cors)); c != "" && c != "null" && c != "{}" {
		return b, lambdaInvalid("Cors is not supported: the function's own response sets its CORS headers")
	}
	if b.InvokeMode != "" && b.InvokeMode != "BUFFERED" {
		return b, lambdaInvalid("InvokeMode %.40q: only BUFFERED; InvokeWithResponseStream streams a response through the Lambda API", b.InvokeMode)
	}
	return b, nil
}

// urlConfig is a function's URL in Lambda's shape. The trigger keeps no
// time of its own: both times are the function's last change.
func (s *Server) urlConfig(r *http.Request, f projections.Function) map[string]any {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	authType := map[string]string{
		function.TriggerAuthNone: "NONE", function.TriggerAuthAWSIAM: "AWS_IAM",
		function.TriggerAuthToken: "MINILAMBDA_TOKEN", function.TriggerAuthHMAC: "MINILAMBDA_HMAC",
	}[f.HTTPTrigger.Auth]
	at := f.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	return map[string]any{
		"FunctionUrl": scheme + "://" + r.Host + "/hooks/" + f.Name + "/", "FunctionArn": s.arn(f.Name),
		"AuthType": authType, "InvokeMode": "BUFFERED", "CreationTime": at, "LastModifiedTime": at,
	}
}

// urlNotFound is Lambda's answer for a function without a URL.
func (s *Server) urlNotFound(f projections.Function) error {
	return lambdaError{http.StatusNotFound, "ResourceNotFoundException", "The resource you requested does not exist: function " + f.Name + " has no function URL"}
}

// setTrigger records the function's new trigger (nil: none) and answers
// with its URL, or 204 when it is gone.
func (s *Server) setTrigger(w http.ResponseWriter, r *http.Request, f projections.Function, t *function.HTTPTrigger, status int) {
	if t == nil {
		t = &function.HTTPTrigger{Auth: "off"}
	}
	f, err := s.opts.Functions.Update(r.Context(), f.ID, function.Patch{HTTPTrigger: t})
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	if f.HTTPTrigger == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, status, s.urlConfig(r, f))
}

func (s *Server) lambdaCreateURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	b, err := s.decodeURLBody(w, r)
	if err == nil && b.AuthType == nil {
		err = lambdaInvalid("AuthType is required: NONE or AWS_IAM")
	}
	var auth string
	if err == nil {
		auth, err = urlAuth(*b.AuthType)
	}
	if err == nil && f.HTTPTrigger != nil {
		err = lambdaError{http.StatusConflict, "ResourceConflictException", "function " + f.Name + " has a function URL already: UpdateFunctionUrlConfig changes it"}
	}
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	s.setTrigger(w, r, f, &function.HTTPTrigger{Auth: auth}, http.StatusCreated)
}

func (s *Server) lambdaUpdateURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	b, err := s.decodeURLBody(w, r)
	if err == nil && f.HTTPTrigger == nil {
		err = s.urlNotFound(f)
	}
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	if b.AuthType == nil {
		writeJSON(w, http.StatusOK, s.urlConfig(r, f))
		return
	}
	auth, err := urlAuth(*b.AuthType)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	t := *f.HTTPTrigger
	t.Auth, t.HMACSecret, t.HMACHeader = auth, "", ""
	s.setTrigger(w, r, f, &t, http.StatusOK)
}

func (s *Server) lambdaGetURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	if f.HTTPTrigger == nil {
		s.writeLambdaError(w, r, s.urlNotFound(f))
		return
	}
	writeJSON(w, http.StatusOK, s.urlConfig(r, f))
}

func (s *Server) lambdaDeleteURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	if f.HTTPTrigger == nil {
		s.writeLambdaError(w, r, s.urlNotFound(f))
		return
	}
	s.setTrigger(w, r, f, nil, http.StatusNoContent)
}

func (s *Server) lambdaListURLs(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	configs := []map[string]any{}
	if f.HTTPTrigger != nil {
		configs = append(configs, s.urlConfig(r, f))
	}
	writeJSON(w, http.StatusOK, map[string]any{"FunctionUrlConfigs": configs})
}

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
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	var b lambdaEventConfig
	err := s.lambdaDecode(w, r, &b)
	if err == nil && !replace && !hasEventConfig(f) {
		err = s.eventConfigNotFound(f)
	}
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

func (s *Server) eventConfigNotFound(f projections.Function) error {
	return lambdaError{http.StatusNotFound, "ResourceNotFoundException", "The function " + s.arn(f.Name) + " doesn't have an EventInvokeConfig"}
}

func (s *Server) lambdaGetEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	if !hasEventConfig(f) {
		s.writeLambdaError(w, r, s.eventConfigNotFound(f))
		return
	}
	writeJSON(w, http.StatusOK, s.eventConfig(f))
}

func (s *Server) lambdaDeleteEventConfig(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.urlFunction(w, r, p)
	if !ok {
		return
	}
	if !hasEventConfig(f) {
		s.writeLambdaError(w, r, s.eventConfigNotFound(f))
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
