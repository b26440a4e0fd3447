package http

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/eventlog"
)

// The audit endpoints show where the log's hash chain ends, and check it
// from the first event while the server runs: seqs without gaps, every
// event decoding and extending the chain to the head it showed. The walk
// of the file's pages and the comparison of the views with a rebuild are
// `minilambda audit`'s, offline: neither can run beside appends.

// Audit is the log as the audit endpoints need it.
type Audit interface {
	Head() (uint64, eventlog.Hash)
	VerifyEvents(ctx context.Context, progress func(done, total uint64)) (eventlog.Summary, error)
}

// auditHeadBody is the answer of GET /audit.
type auditHeadBody struct {
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
}

// routeAudit registers the native API's audit endpoints.
func (s *Server) routeAudit(r group) {
	r.GET("/audit", s.auditHead)
	r.POST("/audit/verify", s.auditVerify)
}

func (s *Server) auditHead(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	seq, hash := s.opts.Audit.Head()
	writeJSON(w, http.StatusOK, auditHeadBody{HeadSeq: seq, HeadHash: hash.String()})
}

// verification is the answer of POST /audit/verify: whether the chain
// holds up to the head it names, and if not, the first thing wrong.
type verification struct {
	OK         bool   `json:"ok"`
	Checked    string `json:"checked"`
	Events     uint64 `json:"events"`
	HeadHash   string `json:"head_hash,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	VerifiedAt string `json:"verified_at"`
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if !s.verifying.TryLock() {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, statusError{http.StatusTooManyRequests, "a verification is running already; try again when it ends"})
		return
	}
	defer s.verifying.Unlock()
	start := time.Now()
	sum, err := s.opts.Audit.VerifyEvents(r.Context(), nil)
	if r.Context().Err() != nil {
		return // the client left; nobody is there to tell
	}
	// A damaged log is the verification's finding; anything else (the
	// file unreadable, the server closing) is the request's failure.
	if err != nil && !errors.Is(err, eventlog.ErrCorrupt) {
		s.writeError(w, r, err)
		return
	}
	v := verification{
		OK:         err == nil,
		Checked:    "seqs and the hash chain from seq 1 to the head",
		Events:     sum.Events,
		DurationMS: time.Since(start).Milliseconds(),
		VerifiedAt: time.Now().UTC().Format(time.RFC3339),
	}
	if err != nil {
		s.log.Error("the event log failed verification", "err", err)
		v.Error = err.Error()
	} else {
		v.HeadHash = sum.Head.String()
	}
	writeJSON(w, http.StatusOK, v)
}
