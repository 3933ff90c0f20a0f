package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// MaxCollection is the most records one sObject Collections request may carry.
const MaxCollection = 200

// transientRecordCodes are per-record results that a retry can fix: the batch is retried.
var transientRecordCodes = map[string]bool{"UNABLE_TO_LOCK_ROW": true}

// upsertResult is one element of the sObject Collections upsert answer (an UpsertResult).
type upsertResult struct {
	ID      string    `json:"id"`
	Success bool      `json:"success"`
	Created bool      `json:"created"`
	Errors  []sfError `json:"errors"`
}

// sfError is one error of a record's result.
type sfError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

// upsertCollections upserts recs through sObject Collections, MaxCollection records a request,
// up to max_concurrency requests at a time, and returns the records Salesforce rejected.
func (c *connector) upsertCollections(ctx context.Context, recs []prepared) ([]sink.RecordError, error) {
	var chunks [][]prepared
	for start := 0; start < len(recs); start += MaxCollection {
		chunks = append(chunks, recs[start:min(start+MaxCollection, len(recs))])
	}
	failed := make([][]sink.RecordError, len(chunks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.maxConcurrency)
	for k, chunk := range chunks {
		g.Go(func() error {
			var err error
			failed[k], err = c.upsertChunk(gctx, chunk)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []sink.RecordError
	for _, f := range failed {
		out = append(out, f...)
	}
	return out, nil
}

// upsertChunk sends one sObject Collections upsert and maps its results, which come in request
// order, to the batch's records.
func (c *connector) upsertChunk(ctx context.Context, chunk []prepared) ([]sink.RecordError, error) {
	r := apiRequest{method: "PATCH", path: "/composite/sobjects/" + c.cfg.sobject + "/" + c.cfg.externalID,
		body: c.collectionBody(chunk), contentType: "application/json"}
	body, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var results []upsertResult
	if err := json.Unmarshal(body, &results); err != nil {
		return nil, fmt.Errorf("salesforce: %s %s: unreadable answer: %w: %s", r.method, r.path, err, httpx.Snippet(body, snippetBytes))
	}
	if len(results) != len(chunk) {
		return nil, fmt.Errorf("salesforce: %s %s: %d results for %d records", r.method, r.path, len(results), len(chunk))
	}
	var failed []sink.RecordError
	for i, res := range results {
		if res.Success {
			continue
		}
		if transient := transientCode(res.Errors); transient != "" {
			return nil, sink.Retryable(fmt.Errorf("salesforce: %s %s: record %s: %s", r.method, r.path, chunk[i].extID, transient))
		}
		failed = append(failed, sink.RecordError{Index: chunk[i].index, Reason: "salesforce rejected the record: " + describeErrors(res.Errors)})
	}
	return failed, nil
}

// collectionBody is {"allOrNone":false,"records":[{"attributes":{"type":…},<ext id>:…,…},…]},
// each record's fields in the mapping's order.
func (c *connector) collectionBody(chunk []prepared) []byte {
	typ, _ := json.Marshal(c.cfg.sobject)
	ext, _ := json.Marshal(c.cfg.externalID)
	var buf bytes.Buffer
	buf.WriteString(`{"allOrNone":false,"records":[`)
	for i, pr := range chunk {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"attributes":{"type":`)
		buf.Write(typ)
		buf.WriteString(`},`)
		buf.Write(ext)
		buf.WriteByte(':')
		buf.Write(pr.extRaw)
		for k, name := range pr.names {
			n, _ := json.Marshal(name)
			buf.WriteByte(',')
			buf.Write(n)
			buf.WriteByte(':')
			buf.Write(pr.json[k])
		}
		buf.WriteByte('}')
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

// transientCode returns the first error code of errs that a retry can fix, or "".
func transientCode(errs []sfError) string {
	for _, e := range errs {
		if transientRecordCodes[e.StatusCode] {
			return e.StatusCode + ": " + e.Message
		}
	}
	return ""
}

// describeErrors renders a record's errors as "CODE: message (fields a, b); …".
func describeErrors(errs []sfError) string {
	if len(errs) == 0 {
		return "rejected without a reason"
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.StatusCode + ": " + e.Message
		if len(e.Fields) > 0 {
			parts[i] += " (fields " + strings.Join(e.Fields, ", ") + ")"
		}
	}
	return strings.Join(parts, "; ")
}
