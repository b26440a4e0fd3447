package http

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Versions publishes versions of functions and keeps their aliases, and
// reads both.
type Versions interface {
	PublishVersion(ctx context.Context, ref string, p function.Publish) (projections.Version, error)
	PutAlias(ctx context.Context, ref, name string, spec function.AliasSpec, create bool) (projections.Alias, error)
	DeleteAlias(ctx context.Context, ref, name string) error
	Versions(ref string) ([]projections.Version, error)
	Version(ref string, n int) (projections.Version, error)
	Aliases(ref string) ([]projections.Alias, error)
	Alias(ref, name string) (projections.Alias, error)
	// ImageID is the ID of the image a reference names now.
	ImageID(ctx context.Context, image string) (string, error)
}

// routeVersions registers the native API's versions and aliases.
func (s *Server) routeVersions(r group) {
	r.POST("/functions/:id/versions", s.publishVersion)
	r.GET("/functions/:id/versions", s.listVersions)
	r.GET("/functions/:id/versions/:version", s.getVersion)
	r.POST("/functions/:id/aliases", s.createAlias)
	r.GET("/functions/:id/aliases", s.listAliases)
	r.GET("/functions/:id/aliases/:alias", s.getAlias)
	r.PUT("/functions/:id/aliases/:alias", s.updateAlias)
	r.DELETE("/functions/:id/aliases/:alias", s.deleteAlias)
}

// splitQualifier takes a qualifier off an invocation's path ("fn:3",
// "fn:prod") or its ?qualifier=, not both.
func splitQualifier(r *http.Request, p httprouter.Params) (ref, qualifier string, err error) {
	ref = p.ByName("id")
	qualifier = r.URL.Query().Get("qualifier")
	if i := strings.LastIndexByte(ref, ':'); i >= 0 {
		if qualifier != "" {
			return "", "", badRequest{"the qualifier is in the path and in ?qualifier=: give it once"}
		}
		ref, qualifier = ref[:i], ref[i+1:]
		if qualifier == "" {
			return "", "", badRequest{"empty qualifier after ':' in the path"}
		}
	}
	return ref, qualifier, nil
}

type publishBody struct {
	Description string `json:"description"`
}

func (s *Server) publishVersion(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	var body publishBody
	if err := s.decode(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.opts.Versions.PublishVersion(r.Context(), ref, function.Publish{Description: body.Description})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/functions/%s/versions/%d", v.FunctionID, v.Number))
	v.HTTPTrigger = v.HTTPTrigger.Redacted()
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) listVersions(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	vs, err := s.opts.Versions.Versions(ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if vs == nil {
		vs = []projections.Version{}
	}
	for i := range vs {
		vs[i].HTTPTrigger = vs[i].HTTPTrigger.Redacted()
	}
	writeJSON(w, http.StatusOK, vs)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	n, err := strconv.Atoi(p.ByName("version"))
	if err != nil || n < 1 {
		s.writeError(w, r, badRequest{fmt.Sprintf("%.20q is not a version number", p.ByName("version"))})
		return
	}
	v, err := s.opts.Versions.Version(ref, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v.HTTPTrigger = v.HTTPTrigger.Redacted()
	writeJSON(w, http.StatusOK, v)
}

// aliasBody is an alias's settings; the name comes from the path, or the
// body when creating.
type aliasBody struct {
	Name            string             `json:"name"`
	FunctionVersion string             `json:"function_version"`
	Weights         map[string]float64 `json:"additional_version_weights"`
	Description     string             `json:"description"`
}

func (s *Server) putAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params, create bool) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	var body aliasBody
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := body.Name
	if !create {
		if name != "" && name != p.ByName("alias") {
			s.writeError(w, r, badRequest{"the body names another alias than the path; an alias cannot be renamed"})
			return
		}
		name = p.ByName("alias")
	}
	spec := function.AliasSpec{FunctionVersion: body.FunctionVersion, Weights: body.Weights, Description: body.Description}
	if spec.FunctionVersion == "" {
		spec.FunctionVersion = function.Latest
	}
	a, err := s.opts.Versions.PutAlias(r.Context(), ref, name, spec, create)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
		w.Header().Set("Location", "/functions/"+a.FunctionID+"/aliases/"+a.Name)
	}
	writeJSON(w, status, a)
}

func (s *Server) createAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.putAlias(w, r, p, true)
}

func (s *Server) updateAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.putAlias(w, r, p, false)
}

func (s *Server) listAliases(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	as, err := s.opts.Versions.Aliases(ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if as == nil {
		as = []projections.Alias{}
	}
	writeJSON(w, http.StatusOK, as)
}

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	a, err := s.opts.Versions.Alias(ref, p.ByName("alias"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	if err := s.opts.Versions.DeleteAlias(r.Context(), ref, p.ByName("alias")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
