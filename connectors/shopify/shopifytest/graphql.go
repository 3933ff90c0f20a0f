package shopifytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// request is a GraphQL request body.
type request struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables"`
}

// operation is one supported root field.
type operation struct {
	name string
	// cost is the requested cost, before execution.
	cost func(s *Server, req *request) float64
	// run executes under s.mu and returns data, the actual cost and top-level errors.
	run func(s *Server, version string, req *request) (data map[string]any, actual float64, errs []any)
}

var operations = []operation{
	{name: "inventorySetQuantities", cost: mutationCost, run: (*Server).setQuantities},
	{name: "productVariants", cost: variantsCost, run: (*Server).productVariants},
	{name: "locations", cost: locationsCost, run: (*Server).locationsQuery},
	{name: "currentAppInstallation", cost: func(*Server, *request) float64 { return 1 }, run: (*Server).appInstallation},
}

// appInstallation answers currentAppInstallation { accessScopes { handle } } with Config.Scopes.
func (s *Server) appInstallation(string, *request) (map[string]any, float64, []any) {
	var scopes []any
	for _, h := range s.cfg.Scopes {
		scopes = append(scopes, map[string]any{"handle": h})
	}
	return map[string]any{"currentAppInstallation": map[string]any{"accessScopes": scopes}}, 1, nil
}

var versionRE = regexp.MustCompile(`^(\d{4}-(01|04|07|10)|unstable)$`)

func (s *Server) handleGraphQL(w http.ResponseWriter, r *http.Request) {
	version := r.PathValue("version")
	if !versionRE.MatchString(version) {
		http.Error(w, `{"errors":"Not Found"}`, http.StatusNotFound)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.Requests++
	if !s.authorized(r.Header.Get("X-Shopify-Access-Token")) {
		s.counters.Unauthorized++
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, nil)
		return
	}
	var req request
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil || req.Query == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": map[string]any{
			"query": "Required parameter missing or invalid"}}, nil)
		return
	}
	s.serve(w, version, &req)
}

// serve runs one authorised request against the bucket.
func (s *Server) serve(w http.ResponseWriter, version string, req *request) {
	op, ok := findOperation(req.Query)
	if !ok {
		s.answer(w, nil, []any{gqlError("shopifytest supports only inventorySetQuantities, productVariants and locations", "BAD_REQUEST")}, 0, nil)
		return
	}
	now := time.Now()
	requested := op.cost(s, req)
	if requested > MaxQueryCost {
		msg := fmt.Sprintf("Query cost is %.0f, which exceeds the single query max cost limit (%d).", requested, MaxQueryCost)
		s.answer(w, nil, []any{gqlError(msg, "MAX_COST_EXCEEDED")}, requested, nil)
		return
	}
	if !s.bucket.take(now, requested) {
		s.throttled(w, now, requested)
		return
	}
	data, actual, errs := op.run(s, version, req)
	s.bucket.refund(requested - actual)
	s.answer(w, data, errs, requested, &actual)
}

func findOperation(query string) (operation, bool) {
	for _, op := range operations {
		if strings.Contains(query, op.name+"(") || strings.Contains(query, op.name+" {") {
			return op, true
		}
	}
	return operation{}, false
}

func (s *Server) authorized(tok string) bool {
	exp, ok := s.tokens[tok]
	return ok && tok != "" && (exp.IsZero() || time.Now().Before(exp))
}

// throttled answers THROTTLED: HTTP 200 with the error, or 429 with Retry-After.
func (s *Server) throttled(w http.ResponseWriter, now time.Time, requested float64) {
	s.counters.Throttled++
	errs := []any{map[string]any{"message": "Throttled", "extensions": map[string]any{
		"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}}
	body := map[string]any{"errors": errs, "extensions": s.costExtension(now, requested, nil)}
	if !s.cfg.Throttle429 {
		writeJSON(w, http.StatusOK, body, nil)
		return
	}
	s.counters.Throttled429++
	secs := math.Max(1, math.Ceil(s.bucket.wait(now, requested).Seconds()))
	writeJSON(w, http.StatusTooManyRequests, body, map[string]string{"Retry-After": strconv.FormatFloat(secs, 'f', 1, 64)})
}

// answer writes a 200 GraphQL response with extensions.cost.
func (s *Server) answer(w http.ResponseWriter, data map[string]any, errs []any, requested float64, actual *float64) {
	body := map[string]any{"extensions": s.costExtension(time.Now(), requested, actual)}
	if data != nil {
		body["data"] = data
	}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	writeJSON(w, http.StatusOK, body, nil)
}

func (s *Server) costExtension(now time.Time, requested float64, actual *float64) map[string]any {
	var act any
	if actual != nil {
		act = *actual
	}
	return map[string]any{"cost": map[string]any{
		"requestedQueryCost": requested,
		"actualQueryCost":    act,
		"throttleStatus":     s.bucket.status(now),
	}}
}

func gqlError(msg, code string) map[string]any {
	return map[string]any{"message": msg, "extensions": map[string]any{"code": code}}
}

func writeJSON(w http.ResponseWriter, status int, body any, headers map[string]string) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// handleToken is the client credentials grant.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"}, nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.ClientID == "" || r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("client_id") != s.cfg.ClientID || r.PostForm.Get("client_secret") != s.cfg.ClientSecret {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_client",
			"error_description": "Client authentication failed"}, nil)
		return
	}
	s.counters.TokenGrants++
	tok := fmt.Sprintf("shpat_granted_%d_%d", s.counters.TokenGrants, time.Now().UnixNano())
	s.tokens[tok] = time.Now().Add(s.cfg.TokenTTL)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok,
		"scope": "write_inventory,read_products,read_locations", "expires_in": int(s.cfg.TokenTTL.Seconds())}, nil)
}

// toInt reads a JSON number (decoded with UseNumber) as an int.
func toInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return int(i), err == nil
}

func stringVar(vars map[string]any, name string) string {
	s, _ := vars[name].(string)
	return s
}

// page reads first/after: the page size and the offset the cursor stands for.
func page(vars map[string]any) (first, offset int) {
	first, _ = toInt(vars["first"])
	if after := stringVar(vars, "after"); after != "" {
		offset, _ = strconv.Atoi(after)
	}
	return max(first, 0), max(offset, 0)
}

// pageInfo returns the pageInfo of a page [offset, offset+n) of total elements.
func pageInfo(offset, n, total int) map[string]any {
	if offset+n >= total {
		return map[string]any{"hasNextPage": false, "endCursor": nil}
	}
	return map[string]any{"hasNextPage": true, "endCursor": strconv.Itoa(offset + n)}
}
