package http

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Routes: each dialect registers its routes in a group, and the group's
// auth wraps every handler registered in it, there:
//
//   - the native API (api group, requireToken): functions, invocations,
//     images, versions and aliases, schedules, /events, /audit, and
//     /metrics unless Options.OpenMetrics; and any path no route has;
//   - the Lambda API (its own router under /2015-03-31/, lambdaAuth): a
//     SigV4 signature with the server's key pair;
//   - HTTP triggers (their own router under /hooks/, hookAuth): the rule
//     of the function's trigger (the token, an HMAC signature, or none);
//   - open routes (open): /healthz, /health, and the console's files,
//     which hold no data.
//
// What a credential buys besides (a trusted connection, a body held from
// the budget up front rather than counted in the strangers' share) is
// ServeHTTP's, for the bearer token, and each handler's (Server.trust),
// for the credentials it checks itself.

// auth wraps a group's handlers with the rule of who may call them.
type auth func(httprouter.Handle) httprouter.Handle

// group is a set of routes under one auth rule.
type group struct {
	r    *httprouter.Router
	auth auth
}

func (g group) Handle(method, path string, h httprouter.Handle) { g.r.Handle(method, path, g.auth(h)) }
func (g group) GET(path string, h httprouter.Handle)            { g.Handle(http.MethodGet, path, h) }
func (g group) POST(path string, h httprouter.Handle)           { g.Handle(http.MethodPost, path, h) }
func (g group) PUT(path string, h httprouter.Handle)            { g.Handle(http.MethodPut, path, h) }
func (g group) DELETE(path string, h httprouter.Handle)         { g.Handle(http.MethodDelete, path, h) }

// open lets anyone call a group's routes.
func open(h httprouter.Handle) httprouter.Handle { return h }

// requireToken lets a group's routes be called only with the bearer token,
// when the server has one, checked in constant time. A refusal (401)
// closes the connection, its body unread (ServeHTTP).
func (s *Server) requireToken(next httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		if s.opts.Token != "" && !s.bearerOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="minilambda"`)
			s.writeError(w, r, statusError{http.StatusUnauthorized, "missing or wrong API token: send Authorization: Bearer <token>"})
			return
		}
		next(w, r, p)
	}
}

// bearerOK reports whether r carries the server's API token as a bearer
// credential, in any Authorization value, the scheme in any case (RFC
// 9110), compared in constant time; never when the server has none. The
// one test of the token: it authorizes a request, and it is what a hook
// keeps from its function.
func (s *Server) bearerOK(r *http.Request) bool {
	if s.opts.Token == "" {
		return false
	}
	for _, v := range r.Header.Values("Authorization") {
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "Bearer") &&
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), []byte(s.opts.Token)) == 1 {
			return true
		}
	}
	return false
}

// routes builds the server's handler: the native API's router, with the
// routes open to anyone (the console's files) and the token's fallback,
// and a router of its own for each group mounted where its routes are.
func (s *Server) routes() *mux {
	api := group{s.newRouter(s.requireToken), s.requireToken}
	s.routeAPI(api)
	if s.opts.Versions != nil {
		s.routeVersions(api)
	}
	if s.opts.Schedules != nil {
		s.routeSchedules(api)
	}
	if s.opts.Events != nil {
		s.routeEvents(api)
	}
	if s.opts.Audit != nil {
		s.routeAudit(api)
	}
	s.routeConsole(group{api.r, open})
	m := &mux{root: api.r}

	// Probes need no secret; nor does /metrics when it is open.
	probes := group{s.newRouter(open), open}
	probes.GET("/healthz", s.health)
	probes.GET("/health", s.health)
	m.mount("/healthz", false, probes.r)
	m.mount("/health", false, probes.r)
	metrics := promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{})
	serveMetrics := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) { metrics.ServeHTTP(w, r) }
	if s.opts.OpenMetrics {
		probes.GET("/metrics", serveMetrics)
		m.mount("/metrics", false, probes.r)
	} else {
		api.GET("/metrics", serveMetrics)
	}

	if s.opts.Profiling {
		api.GET("/debug/pprof/*profile", serveProfile)
	}

	if s.opts.Versions != nil {
		lambda := group{s.newLambdaRouter(), s.lambdaAuth}
		s.routeLambda(lambda)
		m.mountFunc(isLambdaPath, lambda.r)
	}
	hooks := s.newRouter(open)
	s.routeHooks(hooks)
	m.mount("/hooks/", true, hooks)
	return m
}

// mux hands a request to the router of the group that owns its path: a
// group mounted at a path, or under a prefix, has a router of its own,
// whose answers to the paths and methods it has no route for (404, 405)
// are under its rule; any other path is the native API's router's.
type mux struct {
	root   *httprouter.Router
	mounts []mounted
}

type mounted struct {
	match func(path string) bool
	r     *httprouter.Router
}

// mount gives r the requests for path, or, when prefix, for the paths
// under it.
func (m *mux) mount(path string, prefix bool, r *httprouter.Router) {
	m.mountFunc(func(p string) bool { return p == path || prefix && strings.HasPrefix(p, path) }, r)
}

// mountFunc gives r the requests whose paths match says are its.
func (m *mux) mountFunc(match func(path string) bool, r *httprouter.Router) {
	m.mounts = append(m.mounts, mounted{match, r})
}

func (m *mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, g := range m.mounts {
		if g.match(r.URL.Path) {
			g.r.ServeHTTP(w, r)
			return
		}
	}
	m.root.ServeHTTP(w, r)
}

// isLambdaPath reports whether p is under one of the Lambda API's date
// prefixes (/2015-03-31/, /2016-08-19/, ... /YYYY-MM-DD/): the Lambda
// API's, whose answers are Lambda's, paths it has no operation for too.
func isLambdaPath(p string) bool {
	const date = "/0000-00-00/"
	if len(p) < len(date) {
		return false
	}
	for i := range len(date) {
		switch c := p[i]; date[i] {
		case '0':
			if c < '0' || c > '9' {
				return false
			}
		default:
			if c != date[i] {
				return false
			}
		}
	}
	return true
}

// newLambdaRouter is the Lambda API's router: a path or method it has no
// operation for is answered, once the request's signature checks out, as
// Lambda answers an operation it does not know, never with the native
// API's token refusal.
func (s *Server) newLambdaRouter() *httprouter.Router {
	r := s.newRouter(open)
	unknown := s.lambdaAuth(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		s.writeLambdaError(w, r, lambdaError{http.StatusNotFound, "UnknownOperationException",
			fmt.Sprintf("this server has no Lambda operation at %s %s; docs/aws.md lists the ones it has", r.Method, r.URL.Path)})
	})
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An operation is a method and a path: a path with other methods
		// is no more an operation than one with none.
		w.Header().Del("Allow")
		unknown(w, r, nil)
	})
	r.MethodNotAllowed = r.NotFound
	return r
}

// newRouter is a router whose answers to a path no route has, or a method
// none of its routes takes, are the native API's errors, under fallback.
func (s *Server) newRouter(fallback auth) *httprouter.Router {
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	notFound := fallback(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		s.writeError(w, r, statusError{http.StatusNotFound, fmt.Sprintf("no such path: %s", r.URL.Path)})
	})
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notFound(w, r, nil) })
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A refusal for credentials says nothing of the path's methods.
		allow := w.Header().Get("Allow")
		w.Header().Del("Allow")
		fallback(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, statusError{http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)})
		})(w, r, nil)
	})
	r.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
		s.writeError(w, r, statusError{http.StatusInternalServerError, "internal error"})
	}
	return r
}

// serveProfile serves net/http/pprof's handlers: the index names every
// profile, and serves each by its name.
func serveProfile(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	switch ps.ByName("profile") {
	case "/cmdline":
		pprof.Cmdline(w, r)
	case "/profile":
		pprof.Profile(w, r)
	case "/symbol":
		pprof.Symbol(w, r)
	case "/trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}
