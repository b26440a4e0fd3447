package http

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

// HTTP triggers: a request to /hooks/{function}[/{rest}] becomes the
// function's event in the shape of a Lambda function URL's (API Gateway
// HTTP API payload 2.0), and its result the response, by the same
// convention.

// routeHooks registers the HTTP triggers on their own router, each
// handler under hookAuth: every function's trigger says who may call it.
func (s *Server) routeHooks(r *httprouter.Router) {
	hook := s.hookAuth(s.hook)
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		r.Handle(m, "/hooks/:id", hook)
		r.Handle(m, "/hooks/:id/*rest", hook)
	}
}

// hookHandle serves a hook request that its trigger's rule let in: the
// function it calls, and the body, read and checked.
type hookHandle func(w http.ResponseWriter, r *http.Request, p httprouter.Params, f projections.Function, body []byte)

// hookAuth is the hooks' auth: it finds the function of the path (404,
// saying nothing more, when it has no trigger) and applies its trigger's
// rule. A trigger with auth "token" needs the bearer token; one with
// "hmac" a signature of the body with its secret, in its header, and the
// body leaves the strangers' share once it checks out (Server.trustBody:
// the secret is its senders', not the server's); one with "aws_iam" a
// SigV4 signature by the server's key pair, checked and trusted as the
// Lambda API's (Server.signedBody); one with "none" lets anyone in, its
// body counted in the strangers' share.
func (s *Server) hookAuth(next hookHandle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		ref := p.ByName("id")
		var f projections.Function
		err := projections.ErrNotFound // an id no function can have
		if function.CheckID(ref) == nil {
			f, err = s.opts.Views.Function(ref)
		}
		if err != nil && !errors.Is(err, projections.ErrNotFound) {
			s.writeError(w, r, err)
			return
		}
		if err != nil || f.HTTPTrigger == nil {
			w.Header().Set("Connection", "close")
			s.writeHookError(w, r, statusError{http.StatusNotFound, "Not Found"})
			return
		}
		t := f.HTTPTrigger
		// A refusal closes the connection, its body unread (ServeHTTP).
		if t.Auth == function.TriggerAuthToken && s.opts.Token != "" && !s.bearerOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="minilambda"`)
			s.writeHookError(w, r, statusError{http.StatusUnauthorized, "Unauthorized"})
			return
		}
		if t.Auth == function.TriggerAuthHMAC && r.Header.Get(t.HMACHeader) == "" {
			s.writeHookError(w, r, statusError{http.StatusUnauthorized, "Unauthorized: no " + t.HMACHeader + " signature"})
			return
		}
		// A function URL with AuthType AWS_IAM: SigV4 with the server's
		// key pair, as the Lambda API's (any request passes when the
		// server has no token).
		if t.Auth == function.TriggerAuthAWSIAM && s.opts.Token != "" {
			switch err := s.signedBody(w, r); {
			case errors.Is(err, errKey), errors.Is(err, errSignature):
				s.writeHookError(w, r, statusError{http.StatusForbidden, "Forbidden"})
				return
			case err != nil:
				s.writeError(w, r, err)
				return
			}
		}
		body, err := s.bodyOf(w, r)
		if err != nil {
			s.writeError(w, r, wrapBody("the request body", err))
			return
		}
		if t.Auth == function.TriggerAuthHMAC {
			if !t.VerifyHMAC(r.Header.Get(t.HMACHeader), body) {
				s.writeHookError(w, r, statusError{http.StatusUnauthorized, "Unauthorized: the " + t.HMACHeader + " signature does not match the body"})
				return
			}
			s.trustBody(r)
		}
		next(w, r, p, f, body)
	}
}

func (s *Server) hook(w http.ResponseWriter, r *http.Request, p httprouter.Params, f projections.Function, body []byte) {
	t := f.HTTPTrigger
	// The server's credentials are not the function's: its token, or a
	// signature by its key pair, which could be sent again.
	event, err := json.Marshal(hookEventOf(r, p.ByName("rest"), body, s.bearerOK(r) || t.Auth == function.TriggerAuthAWSIAM))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := function.Request{Event: event, TraceID: traceOf(r)}
	// ?async=true is how the seed's client asks for it.
	if t.Async || r.Header.Get("X-Invocation-Type") == "Event" || r.URL.Query().Get("async") == "true" {
		inv, err := s.opts.Invoker.Enqueue(r.Context(), f.ID, req)
		if err != nil {
			s.writeHookError(w, r, err)
			return
		}
		w.Header().Set("X-Invocation-Id", inv.InvocationID)
		w.Header().Set("X-Trace-Id", inv.TraceID)
		writeJSON(w, http.StatusAccepted, accepted{InvocationID: inv.InvocationID, Status: inv.Status, TraceID: inv.TraceID, CreatedAt: inv.CreatedAt})
		return
	}
	inv, err := s.opts.Invoker.Invoke(r.Context(), f.ID, req)
	if err != nil {
		s.writeHookError(w, r, err)
		return
	}
	w.Header().Set("X-Invocation-Id", inv.InvocationID)
	w.Header().Set("X-Trace-Id", inv.TraceID)
	if inv.Status != projections.StatusCompleted {
		s.writeHookError(w, r, statusError{http.StatusBadGateway, "Internal Server Error"})
		return
	}
	res, ok := hookResponseOf(inv.Result)
	if !ok {
		s.writeHookError(w, r, statusError{http.StatusBadGateway, "Internal Server Error"})
		return
	}
	h := w.Header()
	for k, v := range res.headers {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Transfer-Encoding", "Connection", "X-Invocation-Id", "X-Trace-Id",
			// A function's page could otherwise reach past its path: a service
			// worker over the whole origin, or the origin's storage wiped.
			"Service-Worker-Allowed", "Clear-Site-Data":
			continue
		}
		h.Set(k, v)
	}
	// The console shares this origin and keeps the API token in its tab.
	// A function's page runs sandboxed, as an origin of its own: its
	// scripts may run, but it can neither read the console's storage nor
	// register a service worker. Added to any policy the function sets;
	// both hold.
	h.Add("Content-Security-Policy", hookSandbox)
	for _, c := range res.cookies {
		h.Add("Set-Cookie", c)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", res.contentType)
	}
	w.WriteHeader(res.status)
	if r.Method != http.MethodHead {
		w.Write(res.body)
	}
}

// hookSandbox is the policy on every function URL response: everything a
// page may do, but as an opaque origin (no allow-same-origin).
const hookSandbox = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"

// hookEvent is a Lambda function URL's event (payload format 2.0).
type hookEvent struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        hookContext       `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

type hookContext struct {
	AccountID    string   `json:"accountId"`
	APIID        string   `json:"apiId"`
	DomainName   string   `json:"domainName"`
	DomainPrefix string   `json:"domainPrefix"`
	HTTP         hookHTTP `json:"http"`
	RequestID    string   `json:"requestId"`
	RouteKey     string   `json:"routeKey"`
	Stage        string   `json:"stage"`
	Time         string   `json:"time"`
	TimeEpoch    int64    `json:"timeEpoch"`
}

type hookHTTP struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// hookEventOf is the event of a hook request, as a function URL makes
// it. The path is the part after the function's name (rest, decoded), as
// a function URL's is the path after its domain: rawPath as sent, escaped,
// and http.path decoded. rawQueryString is as sent; headers include host.
// The Authorization header is dropped when it carries the server's token
// (dropAuthorization): the server's credential never reaches a function,
// whatever the trigger's auth.
func hookEventOf(r *http.Request, rest string, body []byte, dropAuthorization bool) hookEvent {
	now := time.Now()
	path := rest
	if path == "" {
		path = "/"
	}
	e := hookEvent{
		Version: "2.0", RouteKey: "$default", RawPath: hookRawPath(r, rest), RawQueryString: r.URL.RawQuery,
		Headers: map[string]string{},
		RequestContext: hookContext{
			AccountID: lambdaAccount, APIID: "minilambda", DomainName: r.Host, DomainPrefix: strings.Split(r.Host, ".")[0],
			HTTP:      hookHTTP{Method: r.Method, Path: path, Protocol: r.Proto, UserAgent: r.UserAgent()},
			RequestID: ulid.Make().String(), RouteKey: "$default", Stage: "$default",
			Time: now.UTC().Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
		},
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.RequestContext.HTTP.SourceIP = host
	}
	// net/http moves Host out of the header map; a function URL's event
	// has it.
	if r.Host != "" {
		e.Headers["host"] = r.Host
	}
	for k, vs := range r.Header {
		name := strings.ToLower(k)
		switch {
		case name == "cookie":
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						e.Cookies = append(e.Cookies, c)
					}
				}
			}
		case name == "authorization" && dropAuthorization:
		case name == "host":
		default:
			e.Headers[name] = strings.Join(vs, ",")
		}
	}
	e.QueryStringParameters = hookQuery(r.URL.RawQuery)
	if utf8.Valid(body) {
		e.Body = string(body)
	} else {
		e.Body, e.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	return e
}

// hookRawPath is r's path after /hooks/{function}, as the client sent it
// (escaped: /a%2Fb stays so), "/" when none. rest is the same part
// decoded, as the router matched it.
func hookRawPath(r *http.Request, rest string) string {
	if rest == "" {
		return "/"
	}
	// The decoded path is /hooks/{function}{rest}, and each byte of it is
	// one byte of the escaped path or one %XX: skip the prefix's.
	esc := r.URL.EscapedPath()
	i := 0
	for n := len(r.URL.Path) - len(rest); n > 0 && i < len(esc); n-- {
		if esc[i] == '%' {
			i += 2
		}
		i++
	}
	if i > len(esc) || !strings.HasPrefix(esc[i:], "/") {
		// An escaped / in the function's segment (/hooks/a%2Fb): the
		// router split there; give the rest as it matched.
		return (&url.URL{Path: rest}).EscapedPath()
	}
	return esc[i:]
}

// hookQuery is a function URL's queryStringParameters of a raw query:
// each pair decoded, or kept as sent when it does not decode (y=%zz), and
// repeated names joined with commas; nil when there are none.
func hookQuery(raw string) map[string]string {
	var q map[string]string
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		dk, errK := url.QueryUnescape(k)
		dv, errV := url.QueryUnescape(v)
		if errK == nil && errV == nil {
			k, v = dk, dv
		}
		if q == nil {
			q = map[string]string{}
		}
		if prev, ok := q[k]; ok {
			v = prev + "," + v
		}
		q[k] = v
	}
	return q
}

// hookResponse is what a hook answers.
type hookResponse struct {
	status      int
	headers     map[string]string
	cookies     []string
	body        []byte
	contentType string
}

// hookResponseOf reads a function's result as a function URL does: a JSON
// object with a statusCode gives the status, headers, cookies and body;
// anything else is the body of a 200. ok is false for a result that
// claims the form and breaks it.
func hookResponseOf(result string) (hookResponse, bool) {
	res := hookResponse{status: http.StatusOK, body: []byte(result), contentType: "application/json"}
	var probe map[string]json.RawMessage
	if json.Unmarshal([]byte(result), &probe) != nil || probe["statusCode"] == nil {
		if !json.Valid([]byte(result)) {
			res.contentType = "text/plain; charset=utf-8"
		}
		return res, true
	}
	var shaped struct {
		StatusCode      int               `json:"statusCode"`
		Headers         map[string]string `json:"headers"`
		Cookies         []string          `json:"cookies"`
		Body            *string           `json:"body"`
		IsBase64Encoded bool              `json:"isBase64Encoded"`
	}
	if json.Unmarshal([]byte(result), &shaped) != nil || shaped.StatusCode < 100 || shaped.StatusCode > 599 {
		return res, false
	}
	res.status, res.headers, res.cookies, res.body = shaped.StatusCode, shaped.Headers, shaped.Cookies, nil
	if shaped.Body != nil {
		res.body = []byte(*shaped.Body)
		if shaped.IsBase64Encoded {
			b, err := base64.StdEncoding.DecodeString(*shaped.Body)
			if err != nil {
				return res, false
			}
			res.body = b
		}
	}
	return res, true
}
