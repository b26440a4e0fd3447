package http

import (
	"net/http"
	"slices"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The Lambda API's alias operations.

type lambdaAliasBody struct {
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     *string        `json:"Description"`
	RoutingConfig   *lambdaRouting `json:"RoutingConfig"`
	RevisionID      string         `json:"RevisionId"`
}

func (s *Server) aliasOut(fnName string, a projections.Alias) lambdaAlias {
	out := lambdaAlias{
		AliasArn: s.arn(fnName, a.Name), Name: a.Name, FunctionVersion: a.FunctionVersion,
		Description: a.Description, RevisionID: revisionID(a.Name, a.Revision),
	}
	if len(a.Weights) > 0 {
		out.RoutingConfig = &lambdaRouting{AdditionalVersionWeights: a.Weights}
	}
	return out
}

func (s *Server) lambdaPutAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params, create bool) {
	var b lambdaAliasBody
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	name := b.Name
	var spec function.AliasSpec
	if !create {
		name = p.ByName("alias")
		cur, err := s.opts.Versions.Alias(f.ID, name)
		if err != nil {
			s.writeLambdaError(w, r, s.aliasNotFound(f.Name, name, err))
			return
		}
		if b.RevisionID != "" && b.RevisionID != revisionID(cur.Name, cur.Revision) {
			s.writeLambdaError(w, r, lambdaError{http.StatusPreconditionFailed, "PreconditionFailedException", "the RevisionId does not match the alias's"})
			return
		}
		// UpdateAlias changes what it names and keeps the rest.
		spec = cur.AliasSpec
	}
	if b.FunctionVersion != "" {
		spec.FunctionVersion = b.FunctionVersion
	}
	if b.Description != nil {
		spec.Description = *b.Description
	}
	if b.RoutingConfig != nil {
		spec.Weights = b.RoutingConfig.AdditionalVersionWeights
	}
	if spec.FunctionVersion == "" {
		s.writeLambdaError(w, r, lambdaInvalid("FunctionVersion is required"))
		return
	}
	a, err := s.opts.Versions.PutAlias(r.Context(), f.ID, name, spec, create)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeJSON(w, status, s.aliasOut(f.Name, a))
}

func (s *Server) lambdaCreateAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.lambdaPutAlias(w, r, p, true)
}

func (s *Server) lambdaUpdateAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.lambdaPutAlias(w, r, p, false)
}

func (s *Server) lambdaGetAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	a, err := s.opts.Versions.Alias(f.ID, p.ByName("alias"))
	if err != nil {
		s.writeLambdaError(w, r, s.aliasNotFound(f.Name, p.ByName("alias"), err))
		return
	}
	writeJSON(w, http.StatusOK, s.aliasOut(f.Name, a))
}

func (s *Server) lambdaListAliases(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	as, err := s.opts.Versions.Aliases(f.ID)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	if v := r.URL.Query().Get("FunctionVersion"); v != "" {
		as = slices.DeleteFunc(as, func(a projections.Alias) bool { return a.FunctionVersion != v })
	}
	writeLambdaPage(s, w, r, "Aliases", as, func(a projections.Alias) string { return a.Name },
		func(a projections.Alias) lambdaAlias { return s.aliasOut(f.Name, a) })
}

func (s *Server) lambdaDeleteAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	if err := s.opts.Versions.DeleteAlias(r.Context(), f.ID, p.ByName("alias")); err != nil {
		s.writeLambdaError(w, r, s.aliasNotFound(f.Name, p.ByName("alias"), err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
