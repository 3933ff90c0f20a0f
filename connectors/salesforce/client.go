package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// snippetBytes is how much of a response body error messages quote.
const snippetBytes = 200

// maxResponse bounds how much of a response body is read (Bulk API results included).
const maxResponse = 512 << 20

// Salesforce error codes the connector acts on.
const (
	codeRequestLimit   = "REQUEST_LIMIT_EXCEEDED"
	codeInvalidSession = "INVALID_SESSION_ID"
)

// APIError is a Salesforce REST error answer: the HTTP status and the first error of the body,
// [{"message": "…", "errorCode": "…", "fields": […]}].
type APIError struct {
	Method, Path string // Path is relative to /services/data/{version}
	Status       int
	Code         string
	Message      string
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("salesforce: %s %s: HTTP %d %s: %s", e.Method, e.Path, e.Status, code, e.Message)
}

// apiRequest is one call to the data API, relative to /services/data/{version}.
type apiRequest struct {
	method      string
	path        string
	body        []byte
	contentType string
}

// do sends r with the session's token, within the concurrency cap and the pacing, logging in
// again once on 401 INVALID_SESSION_ID. It returns the 2xx body or a classified error: Retryable
// for transport failures, 5xx, 408 and a failed re-login; RetryAfter(limit_backoff) for 403
// REQUEST_LIMIT_EXCEEDED; an *APIError for any other answer.
func (c *connector) do(ctx context.Context, r apiRequest) ([]byte, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	s, err := c.auth.current(ctx)
	if err != nil {
		return nil, sink.Retryable(err)
	}
	status, body, err := c.send(ctx, s, r)
	if err == nil && status == http.StatusUnauthorized {
		if s, err = c.auth.refresh(ctx, s); err != nil {
			return nil, sink.Retryable(fmt.Errorf("salesforce: %s %s: session expired and logging in again failed: %w", r.method, r.path, err))
		}
		status, body, err = c.send(ctx, s, r)
	}
	if err != nil {
		return nil, err
	}
	return body, c.classify(r, status, body)
}

// send makes one HTTP request after the pacer allows it.
func (c *connector) send(ctx context.Context, s *session, r apiRequest) (int, []byte, error) {
	if c.pacer != nil {
		if err := c.pacer.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return 0, nil, ctx.Err()
			}
			return 0, nil, sink.Retryable(fmt.Errorf("salesforce: pacing: %w", err))
		}
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, s.instanceURL+"/services/data/"+c.cfg.apiVersion+r.path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("salesforce: build %s %s: %w", r.method, r.path, httpx.WithoutURL(err))
	}
	req.Header.Set("Authorization", "Bearer "+s.accessToken)
	req.Header.Set("Accept", "application/json")
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, c.transportError(ctx, r, err)
	}
	defer httpx.DrainClose(resp.Body)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, nil, c.transportError(ctx, r, err)
	}
	return resp.StatusCode, data, nil
}

// transportError marks a failed exchange as retryable, unless the caller gave up.
func (c *connector) transportError(ctx context.Context, r apiRequest, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sink.Retryable(fmt.Errorf("salesforce: %s %s: %w", r.method, r.path, httpx.WithoutURL(err)))
}

// classify turns a non-2xx answer into the error the sink runtime acts on.
func (c *connector) classify(r apiRequest, status int, body []byte) error {
	if status >= 200 && status < 300 {
		return nil
	}
	e := parseAPIError(r, status, body)
	switch {
	case status == http.StatusForbidden && e.Code == codeRequestLimit:
		c.log.Warn("salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED); the batch waits and is retried",
			zap.String("request", r.method+" "+r.path), zap.String("message", e.Message), zap.Duration("retry_in", c.cfg.limitBackoff))
		return sink.RetryAfter(e, c.cfg.limitBackoff)
	case status == http.StatusUnauthorized:
		return sink.Retryable(fmt.Errorf("%w (after logging in again)", e))
	case status >= 500 || status == http.StatusRequestTimeout:
		return sink.Retryable(e)
	}
	return e
}

// parseAPIError reads Salesforce's error array (or, failing that, the start of the body).
func parseAPIError(r apiRequest, status int, body []byte) *APIError {
	e := &APIError{Method: r.method, Path: r.path, Status: status}
	var list []struct {
		Message   string `json:"message"`
		ErrorCode string `json:"errorCode"`
	}
	if json.Unmarshal(body, &list) == nil && len(list) > 0 {
		e.Code, e.Message = list[0].ErrorCode, list[0].Message
		return e
	}
	var one struct {
		Message   string `json:"message"`
		ErrorCode string `json:"errorCode"`
	}
	if json.Unmarshal(body, &one) == nil && one.ErrorCode != "" {
		e.Code, e.Message = one.ErrorCode, one.Message
		return e
	}
	e.Message = httpx.Snippet(body, snippetBytes)
	return e
}

// isAPIError reports whether err is a permanent Salesforce answer (not retryable), and returns it.
func isAPIError(err error) (*APIError, bool) {
	var e *APIError
	if errors.As(err, &e) && !sink.IsRetryable(err) {
		return e, true
	}
	return nil, false
}
