// Package hubspottest is an in-process stand-in for HubSpot's CRM API, for tests and benchmarks
// of the hubspot connector. It follows HubSpot's documented contract as closely as it can:
//
//   - Authorization: Bearer <token> on every request, else 401 with HubSpot's error JSON
//     (category INVALID_AUTHENTICATION; EXPIRED_AUTHENTICATION after ExpireToken).
//   - Rate limits, checked after authentication: a DAILY limit, a rolling window of N requests
//     (TEN_SECONDLY_ROLLING, 10 s by default) and an optional per-second limit (SECONDLY). A
//     rejected request gets 429 with {"status":"error","message":"You have reached your
//     ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"…",
//     "policyName":"TEN_SECONDLY_ROLLING"} (or the SECONDLY / DAILY variant) and does not count.
//     Every authenticated response carries X-HubSpot-RateLimit-Max, -Remaining and
//     -Interval-Milliseconds (and -Daily, -Daily-Remaining, -Secondly, -Secondly-Remaining when
//     those limits are set).
//   - POST /crm/v3/objects/{objectType}/batch/upsert: at most 100 inputs (else 400
//     VALIDATION_ERROR), each {id, idProperty, properties, objectWriteTraceId}; creates or updates
//     the object whose idProperty has that value (email values are stored in lower case, as
//     HubSpot does); "" clears a property. An invalid email property value fails its input: with
//     every input carrying an objectWriteTraceId the reply is 207 with the documented
//     multi-status body (errors[].context.objectWriteTraceId), the other inputs applied;
//     otherwise (or with Options.AllOrNothing) the batch fails with 400 and nothing is applied.
//     Duplicate ids in one batch and non-string property values are refused with 400 too.
//   - POST …/batch/read (by idProperty; missing objects as a 207 OBJECT_NOT_FOUND error naming
//     their ids) and POST …/batch/archive (record ids; 204).
//   - POST /crm/v4/associations/{from}/{to}/batch/create ({from:{id}, to:{id}, types}; 201).
//
// Assumptions where HubSpot's documentation shows no example: the wording of the 400 bodies for
// oversized and duplicate batches, the 400 for an all-or-nothing batch naming its failing inputs
// by objectWriteTraceId in errors[].context, no Retry-After header on 429 unless
// Options.RetryAfter, and rejected requests not counting against the limits.
package hubspottest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultToken is the token a Server accepts unless Options.Token says otherwise.
const DefaultToken = "pat-na1-test-token"

// Options configure a Server. Zero values mean: DefaultToken, no limits, a 10 s window.
type Options struct {
	Token             string
	RequestsPerWindow int           // rolling-window limit (TEN_SECONDLY_ROLLING); 0: none
	Window            time.Duration // the rolling window; default 10s
	PerSecond         int           // SECONDLY limit; 0: none
	DailyLimit        int           // DAILY limit; 0: none
	RetryAfter        bool          // send Retry-After (seconds) with 429s
	AllOrNothing      bool          // invalid inputs fail the whole upsert with 400 (like email upserts)
	Latency           time.Duration // added to every response
}

// Counters are a Server's running totals.
type Counters struct {
	Requests           int // every request received
	RateLimited        int // answered 429, any policy
	DailyLimited       int // of which DAILY
	Unauthorized       int // answered 401
	Upserts            int // batch upsert requests applied (200 or 207)
	InputsUpserted     int // inputs those applied
	Reads              int // batch read requests answered
	Archives           int // batch archive requests answered
	AssociationCreates int // association batch create requests answered
}

// Request is one request the server received.
type Request struct {
	Path string
	Body []byte
}

// Server is the stub. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	opts    Options
	mu      sync.Mutex
	token   string
	expired bool
	hits    []time.Time // admitted requests inside the window
	daily   int
	counts  Counters
	log     []Request
	store   *store
	corr    atomic.Int64
}

// NewServer starts a stub; Close stops it.
func NewServer(opts Options) *Server {
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.Window <= 0 {
		opts.Window = 10 * time.Second
	}
	s := &Server{opts: opts, token: opts.Token, store: newStore()}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// ExpireToken makes the server answer 401 EXPIRED_AUTHENTICATION until RestoreToken.
func (s *Server) ExpireToken() { s.mu.Lock(); s.expired = true; s.mu.Unlock() }

// RestoreToken accepts the token again.
func (s *Server) RestoreToken() { s.mu.Lock(); s.expired = false; s.mu.Unlock() }

// Consume spends n requests of the rolling window (and of the day), as another integration
// sharing the budget would.
func (s *Server) Consume(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for range n {
		s.hits = append(s.hits, now)
	}
	s.daily += n
}

// ResetDaily starts a new day for the daily limit.
func (s *Server) ResetDaily() { s.mu.Lock(); s.daily = 0; s.mu.Unlock() }

// Counters returns the running totals.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// handle authenticates, applies the limits and routes a request.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if s.opts.Latency > 0 {
		time.Sleep(s.opts.Latency)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Requests++
	s.log = append(s.log, Request{Path: r.URL.Path, Body: body})
	if !s.authorized(w, r) || !s.admit(w) {
		return
	}
	s.route(w, r, body)
}

// authorized checks the bearer token; s.mu is held.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || got != s.token:
		s.counts.Unauthorized++
		s.reply(w, http.StatusUnauthorized, map[string]any{"status": "error",
			"message":       "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
			"correlationId": s.correlationID(), "category": "INVALID_AUTHENTICATION"})
		return false
	case s.expired:
		s.counts.Unauthorized++
		s.reply(w, http.StatusUnauthorized, map[string]any{"status": "error",
			"message":       "The OAuth token used to make this call expired 0 second(s) ago.",
			"correlationId": s.correlationID(), "category": "EXPIRED_AUTHENTICATION",
			"context": map[string][]string{"expire time": {time.Now().UTC().Format(time.RFC3339)}}})
		return false
	}
	return true
}

// admit applies the daily, rolling-window and per-second limits; s.mu is held.
func (s *Server) admit(w http.ResponseWriter) bool {
	now := time.Now()
	s.prune(now)
	policy, wait := s.limited(now)
	if policy == "" {
		s.hits = append(s.hits, now)
		s.daily++
		s.setRateHeaders(w.Header(), now)
		return true
	}
	s.counts.RateLimited++
	if policy == "DAILY" {
		s.counts.DailyLimited++
	}
	s.setRateHeaders(w.Header(), now)
	if s.opts.RetryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	}
	s.reply(w, http.StatusTooManyRequests, map[string]any{"status": "error",
		"message":   "You have reached your " + strings.ToLower(policy) + " limit.",
		"errorType": "RATE_LIMIT", "correlationId": s.correlationID(), "policyName": policy})
	return false
}

// limited names the limit a request now would exceed, and when it frees up; s.mu is held.
func (s *Server) limited(now time.Time) (string, time.Duration) {
	switch {
	case s.opts.DailyLimit > 0 && s.daily >= s.opts.DailyLimit:
		return "DAILY", time.Hour
	case s.opts.RequestsPerWindow > 0 && len(s.hits) >= s.opts.RequestsPerWindow:
		return "TEN_SECONDLY_ROLLING", s.hits[len(s.hits)-s.opts.RequestsPerWindow].Add(s.opts.Window).Sub(now)
	case s.opts.PerSecond > 0 && s.lastSecond(now) >= s.opts.PerSecond:
		return "SECONDLY", time.Second
	}
	return "", 0
}

// prune forgets requests that left the window; s.mu is held.
func (s *Server) prune(now time.Time) {
	i := 0
	for i < len(s.hits) && !s.hits[i].After(now.Add(-s.opts.Window)) {
		i++
	}
	s.hits = s.hits[i:]
}

// lastSecond counts the admitted requests of the last second; s.mu is held.
func (s *Server) lastSecond(now time.Time) int {
	n := 0
	for i := len(s.hits) - 1; i >= 0 && s.hits[i].After(now.Add(-time.Second)); i-- {
		n++
	}
	return n
}

// setRateHeaders writes the X-HubSpot-RateLimit-* headers; s.mu is held.
func (s *Server) setRateHeaders(h http.Header, now time.Time) {
	if n := s.opts.RequestsPerWindow; n > 0 {
		h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(n))
		h.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(max(0, n-len(s.hits))))
		h.Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(s.opts.Window.Milliseconds(), 10))
	}
	if n := s.opts.PerSecond; n > 0 {
		h.Set("X-HubSpot-RateLimit-Secondly", strconv.Itoa(n))
		h.Set("X-HubSpot-RateLimit-Secondly-Remaining", strconv.Itoa(max(0, n-s.lastSecond(now))))
	}
	if n := s.opts.DailyLimit; n > 0 {
		h.Set("X-HubSpot-RateLimit-Daily", strconv.Itoa(n))
		h.Set("X-HubSpot-RateLimit-Daily-Remaining", strconv.Itoa(max(0, n-s.daily)))
	}
}

// route dispatches an admitted request; s.mu is held.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method != http.MethodPost:
		s.fail(w, http.StatusMethodNotAllowed, "", "Method not allowed")
	case len(parts) == 6 && parts[0] == "crm" && parts[1] == "v3" && parts[2] == "objects" && parts[4] == "batch":
		s.objects(w, parts[3], parts[5], body)
	case len(parts) == 7 && parts[0] == "crm" && parts[1] == "v4" && parts[2] == "associations" && parts[5] == "batch" && parts[6] == "create":
		s.associate(w, parts[3], parts[4], body)
	default:
		s.fail(w, http.StatusNotFound, "", "Unable to route request: "+r.URL.Path)
	}
}

// objects serves the CRM v3 object batch endpoints; s.mu is held.
func (s *Server) objects(w http.ResponseWriter, objectType, action string, body []byte) {
	switch action {
	case "upsert":
		s.upsert(w, objectType, body)
	case "read":
		s.read(w, objectType, body)
	case "archive":
		s.archive(w, objectType, body)
	default:
		s.fail(w, http.StatusNotFound, "", "Unable to route request: batch/"+action)
	}
}

// reply writes a JSON response; s.mu is held.
func (s *Server) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// fail writes HubSpot's error body; s.mu is held.
func (s *Server) fail(w http.ResponseWriter, code int, category, message string, context ...map[string][]string) {
	if category == "" {
		category = map[int]string{http.StatusBadRequest: "VALIDATION_ERROR", http.StatusNotFound: "OBJECT_NOT_FOUND"}[code]
	}
	e := map[string]any{"status": "error", "message": message, "correlationId": s.correlationID(), "category": category}
	if len(context) > 0 {
		e["errors"] = []map[string]any{{"message": message, "context": context[0]}}
	}
	s.reply(w, code, e)
}

// correlationID makes a fresh, UUID-shaped correlation id.
func (s *Server) correlationID() string {
	return fmt.Sprintf("7e1c0b5a-0000-4000-8000-%012d", s.corr.Add(1))
}
