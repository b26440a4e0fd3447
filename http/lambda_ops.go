package http

import (
	"math"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The Lambda operations deploy tools call beside the functions' own, each
// mapped onto what the platform has: account settings onto the server's
// limits, reserved concurrency onto a function's concurrency and tags onto
// the function's tags, here; function URLs onto its HTTP trigger
// (lambda_urls.go), event invoke config onto its async settings
// (lambda_async.go), and InvokeWithResponseStream onto a sync invocation
// whose response goes out in the event-stream framing (lambda_invoke.go).

// routeLambdaOps registers them all, under their own date prefixes.
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

// tagsOnly refuses a tag operation's ARN with a version or alias: tags
// are a function's, as Lambda's.
const tagsOnly = "tags are a function's: name the function's ARN, without a version or alias"

func (s *Server) lambdaTag(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		Tags map[string]string `json:"Tags"`
	}
	f, ok := s.latestFunction(w, r, p, tagsOnly)
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
	f, ok := s.latestFunction(w, r, p, tagsOnly)
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
	if f, ok := s.latestFunction(w, r, p, tagsOnly); ok {
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
