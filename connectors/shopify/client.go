package shopify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// snippetBytes is how much of a response body error messages quote.
const snippetBytes = 200

// maxThrottleRetries is how many THROTTLED answers one request waits out before the batch is
// handed back to the runtime as retryable (nothing applied by this request is lost either way).
const maxThrottleRetries = 8

// maxRetryAfter caps a server-given Retry-After.
const maxRetryAfter = 5 * time.Minute

// client speaks the Admin GraphQL API of one shop: authentication, pacing to the cost bucket,
// THROTTLED handling and the classification of failures.
type client struct {
	http     *http.Client
	endpoint string // <base>/admin/api/<version>/graphql.json
	auth     tokenSource
	pacer    pacer

	mu      sync.Mutex
	learned map[string]float64 // cost key → requestedQueryCost Shopify last reported
}

func newClient(hc *http.Client, baseURL, version string, auth tokenSource) *client {
	return &client{http: hc, endpoint: baseURL + "/admin/api/" + version + "/graphql.json", auth: auth,
		learned: map[string]float64{}}
}

// gqlRequest is one GraphQL request.
type gqlRequest struct {
	op       string  // operation name, for errors
	costKey  string  // requests with the same key have the same requested cost
	estimate float64 // requested cost until Shopify has reported it for costKey
	Query    string  `json:"query"`
	Vars     any     `json:"variables"`
}

// gqlResponse is a GraphQL response body.
type gqlResponse struct {
	Data       json.RawMessage `json:"data"`
	Errors     json.RawMessage `json:"errors"` // an array of gqlError; a string on some HTTP errors
	Extensions struct {
		Cost *queryCost `json:"cost"`
	} `json:"extensions"`
}

// queryCost is extensions.cost.
type queryCost struct {
	RequestedQueryCost float64        `json:"requestedQueryCost"`
	ActualQueryCost    *float64       `json:"actualQueryCost"`
	ThrottleStatus     throttleStatus `json:"throttleStatus"`
}

// gqlError is one entry of a response's top-level errors.
type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

// throttledError is a THROTTLED answer; wait is the Retry-After of a 429, or 0.
type throttledError struct {
	status int
	wait   time.Duration
}

func (e *throttledError) Error() string {
	return fmt.Sprintf("THROTTLED (HTTP %d): the app's cost bucket in the shop is empty", e.status)
}

// unauthorizedError is a 401: the access token is wrong, expired or revoked.
type unauthorizedError struct{ token string }

func (unauthorizedError) Error() string {
	return "HTTP 401: Shopify rejected the access token (expired, rotated or revoked); set a valid with.token or use with.client_id and with.client_secret"
}

// do runs r and decodes its data into out. THROTTLED answers, as HTTP 200 or 429, are waited out
// and sent again; a 401 with renewable credentials gets a new token and one more try.
func (c *client) do(ctx context.Context, r *gqlRequest, out any) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("shopify: %s: encode request: %w", r.op, err)
	}
	throttles, renewed := 0, false
	for {
		res, err := c.attempt(ctx, r, body)
		var te *throttledError
		var ue unauthorizedError
		switch {
		case err == nil:
			return decodeData(r.op, res, out)
		case errors.As(err, &te) && throttles < maxThrottleRetries:
			throttles++
			if err := httpx.Sleep(ctx, te.wait); err != nil {
				return err
			}
			continue
		case errors.As(err, &te):
			return sink.RetryAfter(fmt.Errorf("shopify: %s: %w", r.op, err), max(te.wait, c.pacer.waitFor(c.estimate(r))))
		case errors.As(err, &ue) && !renewed && c.auth.rejected(ue.token):
			renewed = true
			continue
		case errors.As(err, &ue):
			return sink.Retryable(fmt.Errorf("shopify: %s: %w", r.op, err))
		}
		return err
	}
}

// attempt sends r once, paced to the cost bucket.
func (c *client) attempt(ctx context.Context, r *gqlRequest, body []byte) (*gqlResponse, error) {
	tok, err := c.auth.token(ctx)
	if err != nil {
		return nil, err
	}
	est := c.estimate(r)
	if err := c.pacer.take(ctx, est); err != nil {
		return nil, err
	}
	res, status, header, err := c.post(ctx, tok, body)
	var cost *queryCost
	if res != nil && res.Extensions.Cost != nil {
		cost = res.Extensions.Cost
		c.learn(r.costKey, cost.RequestedQueryCost)
	}
	c.pacer.settle(est, cost)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, sink.Retryable(fmt.Errorf("shopify: %s: %w", r.op, err))
	}
	err = classify(r.op, tok, status, header, res)
	var te *throttledError
	if errors.As(err, &te) && cost == nil {
		// No throttleStatus to pace by: assume the bucket is empty, and wait a second when even
		// its restore rate is unknown.
		if !c.pacer.empty() && te.wait == 0 {
			te.wait = time.Second
		}
	}
	return res, err
}

// post sends one request; the response body is parsed when it is JSON.
func (c *client) post(ctx context.Context, tok string, body []byte) (*gqlResponse, int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Shopify-Access-Token", tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, resp.Header, fmt.Errorf("read response: %w", err)
	}
	var res gqlResponse
	if json.Unmarshal(raw, &res) != nil {
		res = gqlResponse{Errors: json.RawMessage(strconv.Quote(httpx.Snippet(raw, snippetBytes)))}
	}
	return &res, resp.StatusCode, resp.Header, nil
}

// classify turns an answer into nil (data to decode) or an error, retryable unless a retry of
// the same request cannot succeed.
func classify(op, tok string, status int, header http.Header, res *gqlResponse) error {
	switch {
	case status == http.StatusOK:
		return topLevelErrors(op, res)
	case status == http.StatusTooManyRequests:
		return &throttledError{status: status, wait: httpx.RetryAfter(header.Get("Retry-After"), time.Now(), maxRetryAfter)}
	case status == http.StatusUnauthorized:
		return unauthorizedError{token: tok}
	case status >= 500 || status == http.StatusRequestTimeout || status == http.StatusPaymentRequired ||
		status == http.StatusForbidden || status == http.StatusNotFound || status == http.StatusLocked:
		return sink.Retryable(fmt.Errorf("shopify: %s: HTTP %d%s: %s", op, status, statusHint(status), errorText(res)))
	}
	return fmt.Errorf("shopify: %s: HTTP %d: %s", op, status, errorText(res))
}

// statusHint explains the statuses that say the shop, the app or the URL is not ready.
func statusHint(status int) string {
	switch status {
	case http.StatusPaymentRequired:
		return " (the shop is frozen or unpaid)"
	case http.StatusForbidden:
		return " (the app lacks an access scope: write_inventory, read_products and read_locations are needed)"
	case http.StatusNotFound:
		return " (no such shop or API version)"
	case http.StatusLocked:
		return " (the shop is locked)"
	}
	return ""
}

// topLevelErrors reads the errors of a 200 answer: THROTTLED is waited out, anything else is a
// failure of the whole request (retryable: it says nothing about single records).
func topLevelErrors(op string, res *gqlResponse) error {
	var errs []gqlError
	if len(res.Errors) == 0 || string(res.Errors) == "null" {
		return nil
	}
	if json.Unmarshal(res.Errors, &errs) != nil || len(errs) == 0 {
		return sink.Retryable(fmt.Errorf("shopify: %s: %s", op, errorText(res)))
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		if e.Extensions.Code == "THROTTLED" {
			return &throttledError{status: http.StatusOK}
		}
		msgs[i] = strings.TrimSpace(e.Extensions.Code + " " + e.Message)
	}
	err := fmt.Errorf("shopify: %s: %s", op, strings.Join(msgs, "; "))
	if errs[0].Extensions.Code == "MAX_COST_EXCEEDED" {
		return err
	}
	return sink.Retryable(err)
}

func decodeData(op string, res *gqlResponse, out any) error {
	if out == nil {
		return nil
	}
	if len(res.Data) == 0 || string(res.Data) == "null" {
		return sink.Retryable(fmt.Errorf("shopify: %s: answer without data", op))
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		return fmt.Errorf("shopify: %s: decode answer: %w", op, err)
	}
	return nil
}

// estimate is the cost r is expected to request.
func (c *client) estimate(r *gqlRequest) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.learned[r.costKey]; ok && v > 0 {
		return v
	}
	return r.estimate
}

func (c *client) learn(key string, requested float64) {
	if requested <= 0 {
		return
	}
	c.mu.Lock()
	c.learned[key] = requested
	c.mu.Unlock()
}

// errorText is a short form of a response's errors for messages.
func errorText(res *gqlResponse) string {
	if res == nil || len(res.Errors) == 0 {
		return "no details"
	}
	var s string
	if json.Unmarshal(res.Errors, &s) == nil {
		return s
	}
	return httpx.Snippet(res.Errors, snippetBytes)
}
