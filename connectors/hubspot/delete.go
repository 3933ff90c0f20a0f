package hubspot

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
)

// idInput is an input naming a record by id (or by a unique property's value).
type idInput struct {
	ID string `json:"id"`
}

// deleteChunk archives the records of at most MaxInputs deletes: it looks their record ids up by
// the id property, then archives those it found. Records not found are already gone.
func (c *Connector) deleteChunk(ctx context.Context, items []*input) error {
	values := make([]string, len(items))
	for i, in := range items {
		values[i] = in.id
	}
	found, err := c.lookup(ctx, c.cfg.objectType, c.cfg.idProperty, values)
	if err != nil || len(found) == 0 {
		return err
	}
	body := batchInputs[idInput]{}
	for _, v := range values {
		if id, ok := found[v]; ok {
			body.Inputs = append(body.Inputs, idInput{ID: id})
		}
	}
	op := "batch archive " + c.cfg.objectType
	rep, err := c.post(ctx, op, objectPath(c.cfg.objectType, "batch/archive"), body)
	if err != nil {
		return err
	}
	if rep.status != http.StatusNoContent && rep.status != http.StatusOK {
		return statusError(op, rep.status, rep.body)
	}
	return nil
}

// lookup finds the record ids of objectType whose unique property prop has the given values,
// in batch reads of at most MaxInputs. Values with no record are left out of the map.
func (c *Connector) lookup(ctx context.Context, objectType, prop string, values []string) (map[string]string, error) {
	found := make(map[string]string, len(values))
	values = slices.Clone(values)
	slices.Sort(values)
	for chunk := range slices.Chunk(slices.Compact(values), MaxInputs) {
		if err := c.lookupChunk(ctx, objectType, prop, chunk, found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// lookupChunk is one batch read of lookup.
func (c *Connector) lookupChunk(ctx context.Context, objectType, prop string, values []string, found map[string]string) error {
	body := batchInputs[idInput]{IDProperty: prop, Properties: []string{prop}, Inputs: make([]idInput, len(values))}
	for i, v := range values {
		body.Inputs[i] = idInput{ID: v}
	}
	op := "batch read " + objectType
	rep, err := c.post(ctx, op, objectPath(objectType, "batch/read"), body)
	if err != nil {
		return err
	}
	if rep.status != http.StatusOK && rep.status != http.StatusMultiStatus {
		return statusError(op, rep.status, rep.body)
	}
	var br batchReply
	if err := json.Unmarshal(rep.body, &br); err != nil {
		return errorf("%s: unreadable reply: %s", op, httpx.Snippet(rep.body, snippetBytes))
	}
	for _, e := range br.Errors {
		if e.Category != "OBJECT_NOT_FOUND" {
			return errorf("%s: %d %s: %s", op, rep.status, e.label(), httpx.Snippet([]byte(e.Message), snippetBytes))
		}
	}
	matchResults(br.Results, prop, values, found)
	return nil
}

// matchResults maps each requested value to the id of the result carrying it; HubSpot may
// return the value normalised (emails in lower case), so case is ignored when needed.
func matchResults(results []objectResult, prop string, values []string, found map[string]string) {
	exact := make(map[string]bool, len(values))
	byFold := make(map[string]string, len(values))
	for _, v := range values {
		exact[v], byFold[strings.ToLower(v)] = true, v
	}
	for _, r := range results {
		got, _ := r.Properties[prop].(string)
		if exact[got] {
			found[got] = r.ID
		} else if v, ok := byFold[strings.ToLower(got)]; ok {
			found[v] = r.ID
		}
	}
}
