package hubspot

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// upsertInput is one input of a batch upsert.
type upsertInput struct {
	ID         string            `json:"id"`
	IDProperty string            `json:"idProperty"`
	TraceID    string            `json:"objectWriteTraceId"`
	Properties map[string]string `json:"properties"`
}

// batchInputs is the body of batch upsert, read and archive requests.
type batchInputs[T any] struct {
	Inputs     []T      `json:"inputs"`
	IDProperty string   `json:"idProperty,omitempty"` // batch read
	Properties []string `json:"properties,omitempty"` // batch read
}

// batchReply is the body of a batch response (200, 201 or 207).
type batchReply struct {
	Status    string         `json:"status"`
	Results   []objectResult `json:"results"`
	NumErrors int            `json:"numErrors"`
	Errors    []apiError     `json:"errors"`
}

// objectResult is one object of a batch response.
type objectResult struct {
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties"`
}

// objectPath is the path of a CRM v3 object endpoint of objectType.
func objectPath(objectType, action string) string {
	return "/crm/v3/objects/" + url.PathEscape(objectType) + "/" + action
}

// upsertChunk upserts at most MaxInputs records, then makes their associations. On a 400 that
// names the inputs at fault, those are rejected and the rest sent again.
func (c *Connector) upsertChunk(ctx context.Context, items []*input) ([]sink.RecordError, error) {
	var failed []sink.RecordError
	for len(items) > 0 {
		rep, err := c.post(ctx, "batch upsert "+c.cfg.objectType, objectPath(c.cfg.objectType, "batch/upsert"), c.upsertBody(items))
		if err != nil {
			return nil, err
		}
		switch rep.status {
		case http.StatusOK, http.StatusCreated, http.StatusMultiStatus:
			f, err := c.upserted(ctx, rep, items)
			return append(failed, f...), err
		case http.StatusBadRequest:
			rejected, rest, err := rejectedInputs(rep, items, "batch upsert "+c.cfg.objectType)
			if err != nil {
				return nil, err
			}
			failed, items = append(failed, rejected...), rest
		default:
			return nil, statusError("batch upsert "+c.cfg.objectType, rep.status, rep.body)
		}
	}
	return failed, nil
}

// upsertBody is the request body for items; objectWriteTraceId is the record's batch index.
func (c *Connector) upsertBody(items []*input) batchInputs[upsertInput] {
	body := batchInputs[upsertInput]{Inputs: make([]upsertInput, len(items))}
	for i, in := range items {
		body.Inputs[i] = upsertInput{ID: in.id, IDProperty: c.cfg.idProperty, TraceID: strconv.Itoa(in.index), Properties: in.props}
	}
	return body
}

// upserted reads a successful (or multi-status) upsert reply and makes the associations of the
// records HubSpot took.
func (c *Connector) upserted(ctx context.Context, rep *reply, items []*input) ([]sink.RecordError, error) {
	var br batchReply
	if err := json.Unmarshal(rep.body, &br); err != nil && rep.status == http.StatusMultiStatus {
		return nil, errorf("batch upsert %s: unreadable 207 reply: %s", c.cfg.objectType, httpx.Snippet(rep.body, snippetBytes))
	}
	idx := newInputIndex(items)
	var failed []sink.RecordError
	rejected := map[int]bool{}
	for _, e := range br.Errors {
		hit := idx.match(&e)
		if len(hit) == 0 {
			return nil, errorf("batch upsert %s: %d error naming no input: %s: %s", c.cfg.objectType, rep.status, e.label(), httpx.Snippet([]byte(e.Message), snippetBytes))
		}
		for _, in := range hit {
			if !rejected[in.index] {
				rejected[in.index] = true
				failed = append(failed, sink.RecordError{Index: in.index, Reason: e.reason()})
			}
		}
	}
	if len(c.cfg.associations) == 0 {
		return failed, nil
	}
	f, err := c.associateAll(ctx, applied(items, rejected), c.resultIDs(br.Results))
	return append(failed, f...), err
}

// resultIDs maps id-property values to record ids, from the properties HubSpot returned.
func (c *Connector) resultIDs(results []objectResult) map[string]string {
	ids := make(map[string]string, len(results))
	for _, r := range results {
		if v, ok := r.Properties[c.cfg.idProperty].(string); ok && r.ID != "" {
			ids[v], ids[strings.ToLower(v)] = r.ID, r.ID
		}
	}
	return ids
}

// applied is items without the rejected ones.
func applied(items []*input, rejected map[int]bool) []*input {
	out := make([]*input, 0, len(items))
	for _, in := range items {
		if !rejected[in.index] {
			out = append(out, in)
		}
	}
	return out
}

// rejectedInputs splits a 400's inputs into those it names, rejected, and the rest, to be sent
// again (a 400 applies nothing). A 400 naming no input is a batch error: the runtime bisects.
func rejectedInputs(rep *reply, items []*input, op string) ([]sink.RecordError, []*input, error) {
	var e apiError
	_ = json.Unmarshal(rep.body, &e)
	hit := newInputIndex(items).match(&e)
	if len(hit) == 0 {
		return nil, nil, statusError(op, rep.status, rep.body)
	}
	named := map[int]bool{}
	var failed []sink.RecordError
	for _, in := range hit {
		if !named[in.index] {
			named[in.index] = true
			failed = append(failed, sink.RecordError{Index: in.index, Reason: e.reason()})
		}
	}
	return failed, applied(items, named), nil
}

// inputIndex finds the inputs an error names: by objectWriteTraceId (the record's index), by id
// (the id property's value; HubSpot may have lower-cased it, e.g. emails), or by the error's id.
type inputIndex struct {
	byTrace map[string]*input
	byID    map[string]*input
	byFold  map[string]*input
}

func newInputIndex(items []*input) *inputIndex {
	idx := &inputIndex{byTrace: map[string]*input{}, byID: map[string]*input{}, byFold: map[string]*input{}}
	for _, in := range items {
		idx.byTrace[strconv.Itoa(in.index)] = in
		idx.byID[in.id] = in
		idx.byFold[strings.ToLower(in.id)] = in
	}
	return idx
}

// match returns the inputs e names, in its context or its details' contexts.
func (idx *inputIndex) match(e *apiError) []*input {
	var out []*input
	for _, ctx := range append([]map[string]any{e.Context}, detailContexts(e)...) {
		for _, t := range contextStrings(ctx, "objectWriteTraceId") {
			if in := idx.byTrace[t]; in != nil {
				out = append(out, in)
			}
		}
		for _, id := range contextStrings(ctx, "ids") {
			out = appendNonNil(out, idx.find(id))
		}
	}
	if e.ID != "" {
		out = appendNonNil(out, idx.find(e.ID))
	}
	return out
}

// find finds an input by its id property value.
func (idx *inputIndex) find(id string) *input {
	if in := idx.byID[id]; in != nil {
		return in
	}
	return idx.byFold[strings.ToLower(id)]
}

func appendNonNil(list []*input, in *input) []*input {
	if in == nil {
		return list
	}
	return append(list, in)
}

// detailContexts lists the contexts of e's details.
func detailContexts(e *apiError) []map[string]any {
	out := make([]map[string]any, 0, len(e.Errors))
	for _, d := range e.Errors {
		out = append(out, d.Context)
	}
	return out
}

// contextStrings reads a context entry, a list of strings (or one string).
func contextStrings(ctx map[string]any, key string) []string {
	switch v := ctx[key].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, s := range v {
			if s, ok := s.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
