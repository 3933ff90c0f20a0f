package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check reads the object type's properties with the sink's token (GET
// /crm/v3/properties/{objectType}), writing nothing, and reports a refused token, a missing scope
// or object type, and every mapped field (id_property included) that is not a writable property.
func Check(ctx context.Context, p sink.Params, fields []string) error {
	cfg, err := parseConfig(p)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.baseURL+"/crm/v3/properties/"+cfg.objectType, nil)
	if err != nil {
		return errorf("check: build request: %w", httpx.WithoutURL(err))
	}
	req.Header.Set("Authorization", "Bearer "+cfg.token)
	req.Header.Set("User-Agent", "backflow")
	resp, err := (&http.Client{Timeout: cfg.timeout}).Do(req)
	if err != nil {
		return errorf("check: read the properties of %s: %w", cfg.objectType, httpx.WithoutURL(err))
	}
	defer httpx.DrainClose(resp.Body)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return errorf("check: read the properties of %s: %w", cfg.objectType, httpx.WithoutURL(err))
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return errorf("with.token: HubSpot refused the token (%s)", answer(resp.StatusCode, data))
	case http.StatusForbidden:
		return errorf("with.token: the token may not read %s (%s): grant the private app the crm.objects.%s.read and .write scopes",
			cfg.objectType, answer(resp.StatusCode, data), cfg.objectType)
	case http.StatusNotFound, http.StatusBadRequest:
		return errorf("with.object_type: HubSpot has no object type %q (%s)", cfg.objectType, answer(resp.StatusCode, data))
	default:
		return errorf("check: read the properties of %s (%s)", cfg.objectType, answer(resp.StatusCode, data))
	}
	return propertyProblems(cfg, data, fields)
}

// propertyProblems reports the fields that are not properties of the object type, or are read only.
func propertyProblems(cfg *config, data []byte, fields []string) error {
	var body struct {
		Results []struct {
			Name                 string `json:"name"`
			ModificationMetadata struct {
				ReadOnlyValue bool `json:"readOnlyValue"`
			} `json:"modificationMetadata"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return errorf("check: decode the properties of %s: %w", cfg.objectType, err)
	}
	readOnly := map[string]bool{}
	for _, r := range body.Results {
		readOnly[r.Name] = r.ModificationMetadata.ReadOnlyValue
	}
	var problems []error
	for _, f := range append([]string{cfg.idProperty}, fields...) {
		ro, ok := readOnly[f]
		switch {
		case !ok:
			problems = append(problems, errorf("%s has no property %q: create it in HubSpot or map the field to an existing one", cfg.objectType, f))
		case ro && f != cfg.idProperty:
			problems = append(problems, errorf("property %q of %s is read only", f, cfg.objectType))
		}
	}
	return errors.Join(dedupe(problems)...)
}

// dedupe drops repeated problems (the id property is usually a mapped field too).
func dedupe(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return out
}

// answer is what HubSpot said: the status and the message of its error body.
func answer(code int, data []byte) string {
	var e apiError
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		return fmt.Sprintf("HTTP %d %s: %s", code, e.label(), httpx.Snippet([]byte(e.Message), snippetBytes))
	}
	return fmt.Sprintf("HTTP %d: %s", code, httpx.Snippet(data, snippetBytes))
}
