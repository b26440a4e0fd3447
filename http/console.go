package http

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/projections"
)

// The web console is static files, embedded: plain JavaScript modules and
// CSS, no build step. It calls the same API as any client, with the token
// the user gives it, which it keeps in the tab's sessionStorage.

const consolePrefix = "/ui/"

//go:embed console
var consoleFiles embed.FS

// consolePolicy lets the console's pages run only their own scripts and
// styles and talk only to this server. Trusted Types with no policy make
// every HTML sink (innerHTML and the like) throw: what the console shows
// of functions, results and logs can only ever be text.
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// consoleConfig is what the console learns of the server before it calls
// the API.
type consoleConfig struct {
	TokenRequired bool `json:"token_required"`
}

// consoleSchema is the event log's vocabulary the console reads events
// with (schema.json): the event types, each under the name of its
// constant, and their payloads' members. The console has no copy of it.
type consoleSchema struct {
	Events map[string]projections.EventSchema `json:"events"`
}

func consoleHeaders(h http.Header) {
	h.Set("Content-Security-Policy", consolePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	// Revalidated each time, so that a new server's console is the one
	// that loads.
	h.Set("Cache-Control", "no-cache")
}

// routeConsole registers the console's files, which hold no data: the
// console asks for the token and sends it with its own requests.
func (s *Server) routeConsole(r group) {
	files, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	static := http.FileServerFS(files)
	toConsole := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		consoleHeaders(w.Header())
		http.Redirect(w, r, consolePrefix, http.StatusFound)
	}
	r.GET("/", toConsole)
	r.GET(strings.TrimSuffix(consolePrefix, "/"), toConsole)
	r.GET(consolePrefix+"*file", func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		consoleHeaders(w.Header())
		switch p.ByName("file") {
		case "/config.json":
			// Whether to ask for a token before the first call, rather than
			// find out from a refusal.
			writeJSON(w, http.StatusOK, consoleConfig{TokenRequired: s.opts.Token != ""})
			return
		case "/schema.json":
			writeJSON(w, http.StatusOK, consoleSchema{Events: projections.Schema()})
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = p.ByName("file")
		static.ServeHTTP(w, r2)
	})
}
