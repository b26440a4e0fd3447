package http

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

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

// oneURL refuses a function URL operation's qualifier: a function has one
// URL, its $LATEST's.
const oneURL = "a function here has one URL, its $LATEST's: leave the Qualifier out"

// withURL is the function the path names, which must have a URL; on an
// error it has answered.
func (s *Server) withURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
	f, ok := s.latestFunction(w, r, p, oneURL)
	if ok && f.HTTPTrigger == nil {
		s.writeLambdaError(w, r, lambdaError{http.StatusNotFound, "ResourceNotFoundException", "The resource you requested does not exist: function " + f.Name + " has no function URL"})
		return f, false
	}
	return f, ok
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
	f, ok := s.latestFunction(w, r, p, oneURL)
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
	f, ok := s.withURL(w, r, p)
	if !ok {
		return
	}
	b, err := s.decodeURLBody(w, r)
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
	if f, ok := s.withURL(w, r, p); ok {
		writeJSON(w, http.StatusOK, s.urlConfig(r, f))
	}
}

func (s *Server) lambdaDeleteURL(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	if f, ok := s.withURL(w, r, p); ok {
		s.setTrigger(w, r, f, nil, http.StatusNoContent)
	}
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
