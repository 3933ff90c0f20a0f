package httpsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// snippetBytes is how much of a response body error messages quote.
const snippetBytes = 200

// maxRetryAfter caps a server-given wait.
const maxRetryAfter = 24 * time.Hour

// stallStatuses say the endpoint or the credentials are wrong, not the records: retried, so the
// sink waits for a fix instead of dead-lettering every record.
var stallStatuses = []int{
	http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
	http.StatusMethodNotAllowed, http.StatusProxyAuthRequired,
}

// outcome interprets a response to a chunk.
func (c *connector) outcome(resp *http.Response, body []byte, chunk []encoded) ([]sink.RecordError, error) {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return c.recordResults(code, body, chunk)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return nil, sink.RetryAfter(c.statusError(resp, body), httpx.RetryAfter(resp.Header.Get("Retry-After"), time.Now(), maxRetryAfter))
	case code == http.StatusRequestTimeout || code >= 500:
		return nil, sink.Retryable(c.statusError(resp, body))
	case code < 400 && resp.Header.Get("Location") != "":
		return nil, sink.Retryable(c.redirectError(resp))
	case code < 400 || slices.Contains(stallStatuses, code):
		return nil, sink.Retryable(c.statusError(resp, body))
	}
	return nil, c.statusError(resp, body)
}

// statusError describes a failed response with its status and the start of its body.
func (c *connector) statusError(resp *http.Response, body []byte) error {
	return fmt.Errorf("http: POST %s: %s: %s", c.cfg.display, resp.Status, httpx.Snippet(body, snippetBytes))
}

// redirectError explains a redirect the client did not follow, naming only the origin it
// points to (the rest of the Location may carry tokens).
func (c *connector) redirectError(resp *http.Response) error {
	to := "an unreadable Location"
	if u, err := resp.Location(); err == nil {
		to = u.Scheme + "://" + u.Host
	}
	return fmt.Errorf("http: POST %s: %s to %s not followed: only 307 and 308 redirects within the URL's scheme, host and port are; set with.url to where the webhook lives now",
		c.cfg.display, resp.Status, to)
}

// resultsBody is the optional per-record report of a 2xx response.
type resultsBody struct {
	Results []recordResult `json:"results"`
	Failed  []recordResult `json:"failed"`
}

// recordResult is one record's outcome; Index is into the request's records.
type recordResult struct {
	Index     *int   `json:"index"`
	OK        *bool  `json:"ok"`
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

// recordResults reads per-record failures from a 2xx body, if it has any.
func (c *connector) recordResults(code int, body []byte, chunk []encoded) ([]sink.RecordError, error) {
	var rb resultsBody
	trimmed := bytes.TrimSpace(body)
	parsed := len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &rb) == nil
	if code == http.StatusMultiStatus && (!parsed || rb.Results == nil && rb.Failed == nil) {
		return nil, fmt.Errorf("http: POST %s: 207 Multi-Status without a results or failed list: %s", c.cfg.display, httpx.Snippet(body, snippetBytes))
	}
	if !parsed {
		return nil, nil
	}
	failures := rb.Failed
	for i, r := range rb.Results {
		if r.OK != nil && !*r.OK || r.OK == nil && r.Error != "" {
			if r.Index == nil {
				r.Index = &i // a results list without indexes is in request order
			}
			failures = append(failures, r)
		}
	}
	return c.rejected(failures, chunk)
}

// rejected maps failures to the batch's record indexes.
func (c *connector) rejected(failures []recordResult, chunk []encoded) ([]sink.RecordError, error) {
	var out []sink.RecordError
	for _, f := range failures {
		if f.Index == nil || *f.Index < 0 || *f.Index >= len(chunk) {
			return nil, fmt.Errorf("http: POST %s: the response reports a failure for record index %s of a %d-record request", c.cfg.display, indexText(f.Index), len(chunk))
		}
		reason := f.Error
		if reason == "" {
			reason = "rejected without a reason"
		}
		if f.Retryable {
			return nil, sink.Retryable(fmt.Errorf("http: POST %s: record %d: %s", c.cfg.display, *f.Index, reason))
		}
		out = append(out, sink.RecordError{Index: chunk[*f.Index].index, Reason: "webhook rejected the record: " + reason})
	}
	slices.SortFunc(out, func(a, b sink.RecordError) int { return a.Index - b.Index })
	return slices.CompactFunc(out, func(a, b sink.RecordError) bool { return a.Index == b.Index }), nil
}

// indexText prints an optional index.
func indexText(i *int) string {
	if i == nil {
		return "(none)"
	}
	return strconv.Itoa(*i)
}
