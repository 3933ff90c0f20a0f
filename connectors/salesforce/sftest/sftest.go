// Package sftest is a stand-in Salesforce for the salesforce connector's tests and benchmark: an
// in-process HTTP server that follows the documented contract of the APIs the connector uses.
//
//   - OAuth 2.0 token endpoint, POST /services/oauth2/token: grant_type client_credentials
//     (client_id, client_secret) and urn:ietf:params:oauth:grant-type:jwt-bearer (an RS256
//     assertion whose signature is checked with Config.PublicKey, with iss = client id, sub =
//     username, aud = Config.Audience and exp at most 3 minutes ahead). The answer carries
//     access_token and instance_url (this server); refusals are 400 {"error","error_description"}.
//   - Every data API call needs "Authorization: Bearer <token>"; expired tokens (ExpireTokens,
//     ExpireAfter) get 401 [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}].
//   - A request budget (Config.Budget per Config.Window; rejected calls do not count) answers
//     403 [{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}].
//   - sObject Collections upsert, PATCH /services/data/{v}/composite/sobjects/{SObject}/{Field}:
//     at most 200 records (400 EXCEEDED_ID_LIMIT beyond), per-record UpsertResults in request
//     order, REQUIRED_FIELD_MISSING for Config.Required fields missing after the upsert,
//     DUPLICATE_EXTERNAL_ID for an external id given twice, null clears a field, absent fields
//     are kept.
//   - Delete by external id, DELETE /services/data/{v}/sobjects/{SObject}/{Field}/{value}: 204,
//     or 404 NOT_FOUND.
//   - Bulk API 2.0 ingest (upsert, CSV): create job, PUT /batches (text/csv), PATCH
//     UploadComplete or {"state":"Aborted"} (counted in Stats.BulkAborts; JobStates shows every
//     job's state), GET the job (InProgress for Config.BulkPolls polls, then
//     JobComplete), successfulResults (sf__Id, sf__Created, the uploaded columns) and
//     failedResults (sf__Id, sf__Error, the uploaded columns), each in shuffled order. An empty
//     cell leaves a field unchanged; #N/A sets it to null.
//
// Stats counts requests, rejections and the most requests seen in flight at once.
package sftest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Salesforce limits and error codes the stub enforces.
const (
	CollectionLimit = 200 // records per sObject Collections request

	CodeInvalidSession = "INVALID_SESSION_ID"
	CodeRequestLimit   = "REQUEST_LIMIT_EXCEEDED"
	CodeRequiredField  = "REQUIRED_FIELD_MISSING"
	CodeExceededLimit  = "EXCEEDED_ID_LIMIT"
	CodeDuplicateExtID = "DUPLICATE_EXTERNAL_ID"
	CodeNotFound       = "NOT_FOUND"
)

// Config sets up a Server.
type Config struct {
	ClientID     string         // expected client_id (client credentials) and JWT iss
	ClientSecret string         // expected client_secret (client credentials)
	Username     string         // expected JWT sub
	PublicKey    *rsa.PublicKey // verifies JWT assertions; nil refuses the JWT flow
	Audience     string         // expected JWT aud; default: the server's URL (the login URL)

	// Required lists, per sObject, the fields a record must have after an upsert.
	Required map[string][]string
	// Validate, if set, may reject a record (after Required passed): return a non-nil *Error.
	Validate func(sobject string, record map[string]any) *Error

	Budget int           // data API requests allowed per Window; 0 is unlimited
	Window time.Duration // default 1s

	Latency   time.Duration // added to every data API request
	BulkPolls int           // job polls answered InProgress before JobComplete
	// OmitResults leaves this many successful rows out of each bulk job's results (the records
	// are applied all the same), as when results cannot be matched.
	OmitResults int
	Seed        uint64 // for the shuffled bulk results

	// Describe lists, per sObject, the fields GET /sobjects/{sobject}/describe reports; an
	// sObject not listed is answered 404 NOT_FOUND, as Salesforce answers an unknown one.
	Describe map[string][]Field
}

// Field is one field of a describe answer (the properties the connector reads).
type Field struct {
	Name       string `json:"name"`
	ExternalID bool   `json:"externalId"`
	Createable bool   `json:"createable"`
	Updateable bool   `json:"updateable"`
}

// Error is one error of a record's result, as sObject Collections report it.
type Error struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

// Stats counts what the server saw.
type Stats struct {
	TokenRequests     int // token endpoint calls, both flows
	Requests          int // data API calls, answered or not
	Unauthorized      int // answered 401 INVALID_SESSION_ID
	LimitRejections   int // answered 403 REQUEST_LIMIT_EXCEEDED
	Collections       int // sObject Collections upserts answered 200
	CollectionRecords int // records in those
	BulkJobs          int // ingest jobs created
	BulkRecords       int // rows processed by ingest jobs
	BulkAborts        int // ingest jobs moved to Aborted by PATCH {"state":"Aborted"}
	Deletes           int // deletes by external id answered 204
	MaxConcurrent     int // most data API calls in flight at once
}

// Server is the stand-in Salesforce. Its URL is both the login URL and the instance URL.
type Server struct {
	*httptest.Server
	cfg Config

	mu       sync.Mutex
	tokens   map[string]bool
	grace    int // data calls left before tokens expire; -1: no expiry planned
	tables   map[string]*table
	jobs     map[string]*job
	nextID   int
	stats    Stats
	inflight int
	window   int64 // index of the current budget window
	used     int   // requests admitted in it
	start    time.Time
	inject   []injected
	last     []map[string]any
	rng      *mrand.Rand
}

// injected is a canned answer for the next data API call.
type injected struct {
	status        int
	code, message string
}

// New starts a server; Close it when done.
func New(cfg Config) *Server {
	if cfg.Window <= 0 {
		cfg.Window = time.Second
	}
	s := &Server{cfg: cfg, tokens: map[string]bool{}, grace: -1, tables: map[string]*table{}, jobs: map[string]*job{},
		start: time.Now(), rng: mrand.New(mrand.NewPCG(cfg.Seed, 0x5eed))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/oauth2/token", s.token)
	const data = "/services/data/{version}"
	mux.HandleFunc("PATCH "+data+"/composite/sobjects/{sobject}/{field}", s.data(s.upsertCollection))
	mux.HandleFunc("DELETE "+data+"/sobjects/{sobject}/{field}/{value}", s.data(s.deleteByExternalID))
	mux.HandleFunc("GET "+data+"/sobjects/{sobject}/describe", s.data(s.describe))
	mux.HandleFunc("POST "+data+"/jobs/ingest", s.data(s.createJob))
	mux.HandleFunc("PUT "+data+"/jobs/ingest/{id}/batches", s.data(s.uploadJob))
	mux.HandleFunc("PATCH "+data+"/jobs/ingest/{id}", s.data(s.patchJob))
	mux.HandleFunc("GET "+data+"/jobs/ingest/{id}", s.data(s.jobInfo))
	mux.HandleFunc("GET "+data+"/jobs/ingest/{id}/successfulResults", s.data(s.results(true)))
	mux.HandleFunc("GET "+data+"/jobs/ingest/{id}/failedResults", s.data(s.results(false)))
	s.Server = httptest.NewServer(mux)
	return s
}

// ExpireTokens invalidates every access token issued so far.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// ExpireAfter lets n more data API calls through, then invalidates every token issued so far.
func (s *Server) ExpireAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grace = n
	if n == 0 {
		clear(s.tokens)
		s.grace = -1
	}
}

// InjectErrors answers the next n authorized data API calls with status and a Salesforce error.
func (s *Server) InjectErrors(n, status int, code, message string) {
	s.InjectErrorsAfter(0, n, status, code, message)
}

// InjectErrorsAfter lets skip authorized data API calls through, then answers the n after them
// with status and a Salesforce error.
func (s *Server) InjectErrorsAfter(skip, n, status int, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range skip {
		s.inject = append(s.inject, injected{})
	}
	for range n {
		s.inject = append(s.inject, injected{status: status, code: code, message: message})
	}
}

// JobStates returns the state of every ingest job created so far, by job id.
func (s *Server) JobStates() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	states := make(map[string]string, len(s.jobs))
	for id, j := range s.jobs {
		states[id] = j.State
	}
	return states
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ResetStats zeroes the counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
}

// LastRecords returns the records of the last sObject Collections request, as sent.
func (s *Server) LastRecords() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// data wraps a data API handler: in-flight tracking, authorization, budget, injected errors,
// latency.
func (s *Server) data(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.enter()
		defer s.leave()
		if !s.admit(w, r) {
			return
		}
		if s.cfg.Latency > 0 {
			time.Sleep(s.cfg.Latency)
		}
		h(w, r)
	}
}

func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight++
	s.stats.MaxConcurrent = max(s.stats.MaxConcurrent, s.inflight)
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
}

// admit checks the token, the budget and injected errors, and answers refusals.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.tokens[token] {
		s.stats.Unauthorized++
		writeError(w, http.StatusUnauthorized, CodeInvalidSession, "Session expired or invalid")
		return false
	}
	if s.overBudget() {
		s.stats.LimitRejections++
		writeError(w, http.StatusForbidden, CodeRequestLimit, "TotalRequests Limit exceeded.")
		return false
	}
	s.countDown()
	if len(s.inject) > 0 {
		in := s.inject[0]
		s.inject = s.inject[1:]
		if in.status != 0 { // 0: a call InjectErrorsAfter lets through
			writeError(w, in.status, in.code, in.message)
			return false
		}
	}
	return true
}

// overBudget reports whether the current window's budget is spent, counting this call if not.
func (s *Server) overBudget() bool {
	if s.cfg.Budget <= 0 {
		return false
	}
	if w := int64(time.Since(s.start) / s.cfg.Window); w != s.window {
		s.window, s.used = w, 0
	}
	if s.used >= s.cfg.Budget {
		return true
	}
	s.used++
	return false
}

// countDown expires the tokens once ExpireAfter's calls have gone through.
func (s *Server) countDown() {
	if s.grace < 0 {
		return
	}
	if s.grace--; s.grace == 0 {
		clear(s.tokens)
		s.grace = -1
	}
}

// issueToken records and returns a new access token; s.mu is held.
func (s *Server) issueToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	t := "00D000000000001!" + hex.EncodeToString(b)
	s.tokens[t] = true
	return t
}

// newID returns a record or job id with the given 3-character key prefix; s.mu is held.
func (s *Server) newID(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s%015d", prefix, s.nextID)
}

// writeError answers [{"message": …, "errorCode": …}], Salesforce's error body.
// describe answers GET /sobjects/{sobject}/describe with the configured fields.
func (s *Server) describe(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("sobject")
	fields, ok := s.cfg.Describe[name]
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "The requested resource does not exist")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "fields": fields})
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, []map[string]any{{"message": message, "errorCode": code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
