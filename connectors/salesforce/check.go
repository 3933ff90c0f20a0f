package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check logs in with the sink's credentials and describes the sObject (GET
// /sobjects/{sobject}/describe), writing nothing. It reports refused credentials, an unknown
// sObject, an external id field that is missing or not marked External ID, and every mapped field
// the sObject lacks or the user may not create or update.
func Check(ctx context.Context, p sink.Params, fields []string) error {
	c, err := New(ctx, p)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.(*connector).check(ctx, fields)
}

type describedField struct {
	Name       string `json:"name"`
	ExternalID bool   `json:"externalId"`
	Createable bool   `json:"createable"`
	Updateable bool   `json:"updateable"`
}

func (c *connector) check(ctx context.Context, fields []string) error {
	if _, err := c.auth.current(ctx); err != nil {
		return fmt.Errorf("salesforce: log in at %s: %w", c.cfg.loginURL, err)
	}
	body, err := c.do(ctx, apiRequest{method: "GET", path: "/sobjects/" + c.cfg.sobject + "/describe"})
	if err != nil {
		return fmt.Errorf("with.sobject: describe %s: %w", c.cfg.sobject, err)
	}
	var d struct {
		Fields []describedField `json:"fields"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("salesforce: decode the description of %s: %w", c.cfg.sobject, err)
	}
	byName := map[string]describedField{}
	for _, f := range d.Fields {
		byName[strings.ToLower(f.Name)] = f // Salesforce field names are case-insensitive
	}
	var problems []error
	if f, ok := byName[strings.ToLower(c.cfg.externalID)]; !ok {
		problems = append(problems, fmt.Errorf("with.external_id_field: %s has no field %s", c.cfg.sobject, c.cfg.externalID))
	} else if !f.ExternalID && !strings.EqualFold(f.Name, "Id") {
		problems = append(problems, fmt.Errorf("with.external_id_field: %s.%s is not marked External ID in Salesforce", c.cfg.sobject, f.Name))
	}
	for _, name := range fields {
		if name == c.cfg.keyField {
			continue // sent as the external id
		}
		f, ok := byName[strings.ToLower(name)]
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("%s has no field %s for the mapped field of that name", c.cfg.sobject, name))
		case !f.Createable || !f.Updateable:
			problems = append(problems, fmt.Errorf("%s.%s may not be created and updated by this user (field-level security, or a formula field)", c.cfg.sobject, f.Name))
		}
	}
	return errors.Join(problems...)
}
