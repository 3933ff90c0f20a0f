package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// snippetBytes is how much of a response body error messages quote.
const snippetBytes = 500

// maxResponse bounds how much of a response body is read.
const maxResponse = 8 << 20

// lockedWait is how long to wait after 423 Locked: HubSpot asks for at least 2 seconds.
const lockedWait = 2 * time.Second

// reply is a response the caller interprets: 2xx, 207, 400 and the other statuses that concern
// the request's content.
type reply struct {
	status int
	body   []byte
}

// apiError is HubSpot's error body, and one entry of a batch response's errors. Every field is
// optional.
type apiError struct {
	Status        string         `json:"status"`
	Message       string         `json:"message"`
	Category      string         `json:"category"`
	ErrorType     string         `json:"errorType"`
	PolicyName    string         `json:"policyName"`
	CorrelationID string         `json:"correlationId"`
	ID            string         `json:"id"`
	Context       map[string]any `json:"context"`
	Errors        []apiDetail    `json:"errors"`
}

// apiDetail is an entry of an error's errors list.
type apiDetail struct {
	Message string         `json:"message"`
	Code    string         `json:"code"`
	Context map[string]any `json:"context"`
}

// post sends one paced request and returns its reply, or an error for the statuses that are
// about HubSpot's state rather than the request's content (429, 401, 403, 404, 423, 408, 5xx).
func (c *Connector) post(ctx context.Context, op, path string, payload any) (*reply, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, errorf("%s: encode request: %w", op, err)
	}
	if err := c.pacer.wait(ctx); err != nil {
		var pause *pauseError
		if errors.As(err, &pause) {
			return nil, sink.RetryAfter(err, pause.wait)
		}
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, errorf("%s: build request: %w", op, httpx.WithoutURL(err))
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "backflow")
	return c.do(req, op)
}

// do sends req and sorts its response.
func (c *Connector) do(req *http.Request, op string) (*reply, error) {
	c.stats.requests.Add(1)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, sink.Retryable(errorf("%s: %w", op, httpx.WithoutURL(err)))
	}
	defer httpx.DrainClose(resp.Body)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, sink.Retryable(errorf("%s: read response: %w", op, httpx.WithoutURL(err)))
	}
	c.pacer.observe(resp.Header)
	return c.classify(op, resp, data)
}

// classify turns the statuses a retry can fix into retryable errors.
func (c *Connector) classify(op string, resp *http.Response, data []byte) (*reply, error) {
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		return nil, c.rateLimited(op, resp, data)
	case code == http.StatusUnauthorized:
		c.stats.unauthorized.Add(1)
		return nil, sink.Retryable(c.alerts.raise("token", "HubSpot rejected the private-app token (expired or revoked): rotate with.token; the sink retries until it is accepted", statusError(op, code, data)))
	case code == http.StatusForbidden:
		return nil, sink.Retryable(c.alerts.raise("scopes", "HubSpot refused the request: the private app lacks a scope it needs (e.g. crm.objects.contacts.write); the sink retries until it is granted", statusError(op, code, data)))
	case code == http.StatusNotFound:
		return nil, sink.Retryable(c.alerts.raise("not_found", "HubSpot does not know this endpoint: check with.object_type and with.base_url; the sink retries until fixed", statusError(op, code, data)))
	case code == http.StatusLocked:
		return nil, sink.RetryAfter(statusError(op, code, data), lockedWait)
	case code == http.StatusRequestTimeout || code >= 500:
		return nil, sink.Retryable(statusError(op, code, data))
	}
	c.alerts.clear()
	return &reply{status: code, body: data}, nil
}

// rateLimited handles a 429 by its policy: a wait for the rolling and per-second limits, a pause
// until the reset for the daily one.
func (c *Connector) rateLimited(op string, resp *http.Response, data []byte) error {
	c.stats.throttled.Add(1)
	var body apiError
	_ = json.Unmarshal(data, &body)
	err := statusError(op, resp.StatusCode, data)
	if body.PolicyName == "DAILY" {
		return sink.RetryAfter(err, c.pacer.dailyLimited())
	}
	wait := c.pacer.throttled(body.PolicyName, httpx.RetryAfter(resp.Header.Get("Retry-After"), time.Now(), time.Hour))
	c.log.Debug("HubSpot rate limit reached; waiting", zap.String("policy", body.PolicyName), zap.Duration("wait", wait))
	return sink.RetryAfter(err, wait)
}

// statusError describes a failed response by its status and HubSpot's category and message.
func statusError(op string, code int, data []byte) error {
	var e apiError
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		return errorf("%s: %d %s: %s", op, code, e.label(), httpx.Snippet([]byte(e.Message), snippetBytes))
	}
	return errorf("%s: %d %s: %s", op, code, http.StatusText(code), httpx.Snippet(data, snippetBytes))
}

// label is the error's category, policy or type.
func (e *apiError) label() string {
	for _, s := range []string{e.Category, e.PolicyName, e.ErrorType} {
		if s != "" {
			return s
		}
	}
	return "error"
}

// reason is the text a rejected record carries to the dead-letter topic.
func (e *apiError) reason() string {
	msg := e.Message
	if len(e.Errors) > 0 && e.Errors[0].Message != "" && !strings.Contains(msg, e.Errors[0].Message) {
		msg += " (" + e.Errors[0].Message + ")"
	}
	return "HubSpot rejected the record: " + e.label() + ": " + httpx.Snippet([]byte(msg), snippetBytes)
}

// errorf formats an error with the connector's prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("hubspot: "+format, args...)
}

// alerts logs a stall (bad token, missing scope) once, until a request goes through.
type alerts struct {
	log  *zap.Logger
	mu   sync.Mutex
	kind string
}

// raise logs msg the first time kind occurs in a row and returns err.
func (a *alerts) raise(kind, msg string, err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kind != kind {
		a.kind = kind
		a.log.Error(msg, zap.Error(err))
	}
	return err
}

// clear ends a stall after a request went through.
func (a *alerts) clear() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kind != "" {
		a.log.Info("HubSpot accepts requests again", zap.String("after", a.kind))
		a.kind = ""
	}
}

// current is the ongoing stall's kind, or "".
func (a *alerts) current() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.kind
}
