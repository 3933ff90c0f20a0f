package hubspot

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// associationInput is one input of the v4 associations batch create.
type associationInput struct {
	From  idInput           `json:"from"`
	To    idInput           `json:"to"`
	Types []associationSpec `json:"types"`
}

// associationSpec names an association type.
type associationSpec struct {
	Category string `json:"associationCategory"`
	TypeID   int    `json:"associationTypeId"`
}

// associateAll makes every configured association for upserted records. fromIDs maps id-property
// values to record ids, as far as the upsert reply told them; the others are looked up.
func (c *Connector) associateAll(ctx context.Context, items []*input, fromIDs map[string]string) ([]sink.RecordError, error) {
	if err := c.completeIDs(ctx, items, fromIDs); err != nil {
		return nil, err
	}
	var failed []sink.RecordError
	for _, a := range c.cfg.associations {
		f, err := c.associate(ctx, a, items, fromIDs)
		if err != nil {
			return nil, err
		}
		failed = append(failed, f...)
	}
	return failed, nil
}

// completeIDs looks up the record ids of items the upsert reply did not name.
func (c *Connector) completeIDs(ctx context.Context, items []*input, fromIDs map[string]string) error {
	var missing []string
	for _, in := range items {
		if recordID(fromIDs, in.id) == "" {
			missing = append(missing, in.id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	found, err := c.lookup(ctx, c.cfg.objectType, c.cfg.idProperty, missing)
	for v, id := range found {
		fromIDs[v] = id
	}
	return err
}

// associate makes one association for the items whose from_field holds a value: it looks the
// targets up by to_id_property and creates the associations in one request. Items whose target
// does not exist are rejected; an association HubSpot refuses fails the batch (the runtime
// bisects it, and every step is idempotent).
func (c *Connector) associate(ctx context.Context, a association, items []*input, fromIDs map[string]string) ([]sink.RecordError, error) {
	targets := targetValues(a, items)
	if len(targets) == 0 {
		return nil, nil
	}
	values := make([]string, 0, len(targets))
	for _, v := range targets {
		values = append(values, v)
	}
	toIDs, err := c.lookup(ctx, a.ToObjectType, a.ToIDProperty, values)
	if err != nil {
		return nil, err
	}
	var failed []sink.RecordError
	body := batchInputs[associationInput]{}
	for _, in := range items {
		v, ok := targets[in.index]
		if !ok {
			continue
		}
		from, to := recordID(fromIDs, in.id), toIDs[v]
		switch {
		case to == "":
			failed = append(failed, sink.RecordError{Index: in.index, Reason: fmt.Sprintf("hubspot: association to %s: no record has %s = %q", a.ToObjectType, a.ToIDProperty, v)})
		case from == "":
			return nil, errorf("association to %s: HubSpot returned no record id for %s = %q", a.ToObjectType, c.cfg.idProperty, in.id)
		default:
			body.Inputs = append(body.Inputs, associationInput{From: idInput{from}, To: idInput{to}, Types: []associationSpec{{a.Category, a.TypeID}}})
		}
	}
	return failed, c.createAssociations(ctx, a, body)
}

// recordID finds the record id of an id-property value, in any case (HubSpot lower-cases emails).
func recordID(ids map[string]string, v string) string {
	if id, ok := ids[v]; ok {
		return id
	}
	return ids[strings.ToLower(v)]
}

// targetValues maps item indexes to the value of the association's from_field, when set.
func targetValues(a association, items []*input) map[int]string {
	out := map[int]string{}
	for _, in := range items {
		v, ok := in.rec.Fields[a.FromField]
		if !ok || v == nil {
			continue
		}
		if s, err := PropertyValue(v); err == nil && s != "" {
			out[in.index] = s
		}
	}
	return out
}

// createAssociations posts one v4 associations batch create.
func (c *Connector) createAssociations(ctx context.Context, a association, body batchInputs[associationInput]) error {
	if len(body.Inputs) == 0 {
		return nil
	}
	op := "associate " + c.cfg.objectType + " to " + a.ToObjectType
	path := "/crm/v4/associations/" + url.PathEscape(c.cfg.objectType) + "/" + url.PathEscape(a.ToObjectType) + "/batch/create"
	rep, err := c.post(ctx, op, path, body)
	if err != nil {
		return err
	}
	if rep.status != http.StatusOK && rep.status != http.StatusCreated {
		return statusError(op, rep.status, rep.body)
	}
	return nil
}
