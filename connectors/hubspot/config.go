package hubspot

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // with.time_zone must load on hosts without a zoneinfo database

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional settings.
const (
	DefaultBaseURL        = "https://api.hubapi.com" // with.base_url
	DefaultRequestsPer10s = 100                      // with.requests_per_10s: the Free/Starter private-app budget
	DefaultTimeout        = 30 * time.Second         // with.timeout, per HTTP request
	DefaultTimeZone       = "UTC"                    // with.time_zone, for the daily limit's reset
	// DefaultAssociationCategory is with.associations[].association_category's default.
	DefaultAssociationCategory = "HUBSPOT_DEFINED"
)

// knownSettings are the keys a hubspot sink's `with` block may hold.
var knownSettings = []string{
	"token", "object_type", "id_property", "base_url", "requests_per_10s", "associations",
	"timeout", "time_zone", "soft_delete_column",
}

// knownAssociationSettings are the keys of one with.associations entry.
var knownAssociationSettings = []string{
	"to_object_type", "to_id_property", "from_field", "association_type_id", "association_category",
}

var associationCategories = []string{"HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"}

// namePattern accepts object types (contacts, 2-123456, p_cars) and property names; they go into
// URL paths and JSON bodies.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// config is the validated `with` block of a hubspot sink.
type config struct {
	token          string
	objectType     string
	idProperty     string
	baseURL        string // no trailing slash
	requestsPer10s int
	associations   []association
	timeout        time.Duration
	location       *time.Location
}

// association associates each upserted record with a record of another object type, found by a
// unique property whose value the record carries in fromField.
type association struct {
	toObjectType string
	toIDProperty string
	fromField    string
	typeID       int
	category     string
}

// parseConfig validates p; every error names the offending `with.<setting>` (or `key`).
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	c := &config{}
	var err error
	if c.token, err = parseToken(p.With["token"]); err != nil {
		return nil, err
	}
	if c.objectType, err = parseName("object_type", p.With["object_type"], "the HubSpot object type, e.g. contacts, companies or a custom object id such as 2-123456"); err != nil {
		return nil, err
	}
	if c.idProperty, err = parseIDProperty(p.With["id_property"], p.Key); err != nil {
		return nil, err
	}
	return c, parseOptional(c, p.With)
}

// parseOptional fills the settings that have defaults.
func parseOptional(c *config, with map[string]any) error {
	var err error
	if c.baseURL, err = parseBaseURL(with["base_url"]); err != nil {
		return err
	}
	if c.requestsPer10s, err = parseBudget(with["requests_per_10s"]); err != nil {
		return err
	}
	if c.associations, err = parseAssociations(with["associations"]); err != nil {
		return err
	}
	if c.timeout, err = parseTimeout(with["timeout"]); err != nil {
		return err
	}
	c.location, err = parseTimeZone(with["time_zone"])
	return err
}

// parseToken checks with.token. Errors never quote it.
func parseToken(v any) (string, error) {
	s, ok := v.(string)
	if !ok || strings.TrimSpace(s) == "" {
		return "", errors.New("with.token: required; expected the private app's access token (e.g. ${HUBSPOT_TOKEN})")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "", errors.New("with.token: contains white space; expected the private app's access token as it is")
	}
	return s, nil
}

// parseName checks a required top-level name setting.
func parseName(key string, v any, what string) (string, error) {
	s, err := checkName(key, v, what)
	if err != nil {
		return "", fmt.Errorf("with.%w", err)
	}
	return s, nil
}

// checkName checks a required object type or property name; its error starts with key.
func checkName(key string, v any, what string) (string, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%s: required; expected %s", key, what)
	}
	if !namePattern.MatchString(s) {
		return "", fmt.Errorf("%s: %q is not a valid name; expected letters, digits, _ or -", key, s)
	}
	return s, nil
}

// parseIDProperty checks with.id_property against the sink's key, which must be one field.
func parseIDProperty(v any, key []string) (string, error) {
	if len(key) != 1 {
		return "", fmt.Errorf("key: the hubspot connector needs exactly one key field, the unique property records are upserted by (with.id_property); got %d: %v", len(key), key)
	}
	if v == nil {
		return key[0], nil
	}
	s, err := parseName("id_property", v, "a unique HubSpot property such as email")
	if err != nil {
		return "", err
	}
	if s != key[0] {
		return "", fmt.Errorf("with.id_property: %q must be the sink's key field %q", s, key[0])
	}
	return s, nil
}

// parseBaseURL checks with.base_url.
func parseBaseURL(v any) (string, error) {
	if v == nil {
		return DefaultBaseURL, nil
	}
	raw, ok := v.(string)
	if !ok || raw == "" {
		return "", errors.New("with.base_url: expected an http:// or https:// URL such as " + DefaultBaseURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("with.base_url: expected an http:// or https:// URL such as " + DefaultBaseURL)
	}
	if u.RawQuery != "" || u.User != nil {
		return "", errors.New("with.base_url: must not carry a query or user info")
	}
	return strings.TrimRight(raw, "/"), nil
}

// parseBudget checks with.requests_per_10s.
func parseBudget(v any) (int, error) {
	if v == nil {
		return DefaultRequestsPer10s, nil
	}
	n, ok := toInt(v)
	if !ok || n < 1 || n > 100000 {
		return 0, fmt.Errorf("with.requests_per_10s: %v is not a positive integer; expected the private app's budget per 10 seconds (100, 190 or 250 by tier)", v)
	}
	return n, nil
}

// parseTimeout checks with.timeout, a Go duration such as "30s".
func parseTimeout(v any) (time.Duration, error) {
	return sink.DurationSetting("timeout", v, DefaultTimeout)
}

// parseTimeZone checks with.time_zone, the HubSpot account's time zone.
func parseTimeZone(v any) (*time.Location, error) {
	if v == nil {
		return time.UTC, nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, errors.New("with.time_zone: expected an IANA time zone such as America/New_York")
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("with.time_zone: %w", err)
	}
	return loc, nil
}

// parseAssociations checks with.associations, a list of association settings.
func parseAssociations(v any) ([]association, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if maps, isMaps := v.([]map[string]any); isMaps {
		list, ok = make([]any, len(maps)), true
		for i, m := range maps {
			list[i] = m
		}
	}
	if !ok {
		return nil, fmt.Errorf("with.associations: expected a list of {to_object_type, to_id_property, from_field, association_type_id}, got %T", v)
	}
	out := make([]association, 0, len(list))
	for i, item := range list {
		a, err := parseAssociation(item)
		if err != nil {
			return nil, fmt.Errorf("with.associations[%d].%w", i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAssociation checks one association; its errors start with the setting's name.
func parseAssociation(v any) (association, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return association{}, fmt.Errorf("to_object_type: expected a map of settings, got %T", v)
	}
	for name := range m {
		if !slices.Contains(knownAssociationSettings, name) {
			return association{}, fmt.Errorf("%s: unknown setting; expected one of %s", name, strings.Join(knownAssociationSettings, ", "))
		}
	}
	var a association
	var err error
	if a.toObjectType, err = checkName("to_object_type", m["to_object_type"], "the object type to associate to, e.g. companies"); err != nil {
		return a, err
	}
	if a.toIDProperty, err = checkName("to_id_property", m["to_id_property"], "the unique property of the other object, e.g. domain"); err != nil {
		return a, err
	}
	if a.fromField, err = checkName("from_field", m["from_field"], "the mapped field holding that property's value"); err != nil {
		return a, err
	}
	if a.typeID, err = assocTypeID(m["association_type_id"]); err != nil {
		return a, err
	}
	a.category, err = assocCategory(m["association_category"])
	return a, err
}

// assocTypeID reads association_type_id.
func assocTypeID(v any) (int, error) {
	n, ok := toInt(v)
	if v == nil || !ok || n < 1 {
		return 0, fmt.Errorf("association_type_id: %v is not a positive integer; expected HubSpot's association type id (e.g. 279 for contact to company)", v)
	}
	return n, nil
}

// assocCategory reads association_category.
func assocCategory(v any) (string, error) {
	if v == nil {
		return DefaultAssociationCategory, nil
	}
	s, _ := v.(string)
	if !slices.Contains(associationCategories, s) {
		return "", fmt.Errorf("association_category: %v; expected one of %s", v, strings.Join(associationCategories, ", "))
	}
	return s, nil
}

// toInt accepts the integer forms YAML and JSON decoders produce.
func toInt(v any) (int, bool) { return sink.IntValue(v) }
