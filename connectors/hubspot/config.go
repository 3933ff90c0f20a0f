package hubspot

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // with.time_zone must load on hosts without a zoneinfo database

	"github.com/backflow-dev/backflow/pkg/connspec"
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

// namePattern accepts object types (contacts, 2-123456, p_cars) and property names; they go into
// URL paths and JSON bodies.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// settings is the `with` block of a hubspot sink, as declared to the docs, the schema and the
// loader.
type settings struct {
	Token            string        `with:"token,required,secret" doc:"The private app's access token." example:"${HUBSPOT_TOKEN}"`
	ObjectType       string        `with:"object_type,required" doc:"The HubSpot object type: contacts, companies, deals, … or a custom object id." example:"contacts"`
	IDProperty       string        `with:"id_property" doc:"The unique property records are upserted by; it must be the sink's only key field, and defaults to it." example:"email"`
	BaseURL          string        `with:"base_url" default:"https://api.hubapi.com" doc:"The API's base URL."`
	RequestsPer10s   int           `with:"requests_per_10s" default:"100" min:"1" doc:"The private app's budget per 10 seconds: 100 (Free/Starter), 190 (Professional/Enterprise), 250 (API limit increase)."`
	Associations     []association `with:"associations" doc:"Associate each upserted record with a record of another object type, found by a unique property whose value the record carries."`
	Timeout          time.Duration `with:"timeout" default:"30s" doc:"How long one HTTP request may take."`
	TimeZone         string        `with:"time_zone" default:"UTC" doc:"The HubSpot account's time zone (IANA name): the daily limit resets at its midnight." example:"America/New_York"`
	SoftDeleteColumn string        `with:"soft_delete_column" doc:"With on_delete: soft_delete, the property set to true in place of a delete."`
}

// association associates each upserted record with a record of another object type, found by a
// unique property whose value the record carries in FromField.
type association struct {
	ToObjectType string `with:"to_object_type,required" doc:"The object type to associate to." example:"companies"`
	ToIDProperty string `with:"to_id_property,required" doc:"The unique property of the other object." example:"domain"`
	FromField    string `with:"from_field,required" doc:"The mapped field holding that property's value." example:"company_domain"`
	TypeID       int    `with:"association_type_id,required" min:"1" doc:"HubSpot's association type id (e.g. 279 for contact to company)." example:"279"`
	Category     string `with:"association_category" default:"HUBSPOT_DEFINED" enum:"HUBSPOT_DEFINED,USER_DEFINED,INTEGRATOR_DEFINED" doc:"The association type's category."`
}

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

// Descriptor is the hubspot connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[settings]("hubspot", "Upserts HubSpot CRM records by a unique property (CRM v3 batch upsert), deletes them (batch archive) and associates them with records of other objects, paced under the private app's rate limit."),
		Check: Check,
		Configure: func(p sink.Params) (sink.Opener, error) {
			cfg, err := parseConfig(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(context.Context) (sink.Connector, error) { return newConnector(cfg, p), nil }), nil
		},
	}
}

// parseConfig validates p, reporting every problem at once.
func parseConfig(p sink.Params) (*config, error) {
	s, ps := connspec.Decode[settings](p.With)
	c := &config{token: s.Token, objectType: s.ObjectType, requestsPer10s: s.RequestsPer10s, associations: s.Associations,
		timeout: s.Timeout, location: time.UTC}
	if strings.ContainsAny(s.Token, " \t\r\n") {
		ps.Add("with.token", "contains white space; expected the private app's access token as it is")
	}
	checkName(&ps, "with.object_type", s.ObjectType)
	c.idProperty = idProperty(&ps, s.IDProperty, p.Key)
	c.baseURL = baseURL(&ps, s.BaseURL)
	if s.RequestsPer10s > 100000 {
		ps.Add("with.requests_per_10s", "%d is more than any HubSpot budget; expected 100, 190 or 250 by tier", s.RequestsPer10s)
	}
	if s.TimeZone != "" {
		loc, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			ps.Add("with.time_zone", "%v; expected an IANA time zone such as America/New_York", err)
		}
		c.location = loc
	}
	for i, a := range s.Associations {
		path := connspec.Index("with.associations", i)
		checkName(&ps, path+".to_object_type", a.ToObjectType)
		checkName(&ps, path+".to_id_property", a.ToIDProperty)
		checkName(&ps, path+".from_field", a.FromField)
	}
	return c, ps.Err()
}

// checkName checks an object type or property name (empty: missing, already reported).
func checkName(ps *connspec.Problems, path, s string) {
	if s != "" && !namePattern.MatchString(s) {
		ps.Add(path, "%q is not a valid name; expected letters, digits, _ or -", s)
	}
}

// idProperty checks with.id_property against the sink's key, which must be one field.
func idProperty(ps *connspec.Problems, s string, key []string) string {
	if len(key) != 1 {
		ps.Add("key", "the hubspot connector needs exactly one key field, the unique property records are upserted by (with.id_property); got %d: %v", len(key), key)
		return ""
	}
	if s == "" {
		return key[0]
	}
	checkName(ps, "with.id_property", s)
	if s != key[0] {
		ps.Add("with.id_property", "%q must be the sink's key field %q", s, key[0])
	}
	return s
}

// baseURL checks with.base_url and returns it without a trailing slash.
func baseURL(ps *connspec.Problems, raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		ps.Add("with.base_url", "expected an http:// or https:// URL such as %s", DefaultBaseURL)
	case u.RawQuery != "" || u.User != nil:
		ps.Add("with.base_url", "must not carry a query or user info")
	}
	return strings.TrimRight(raw, "/")
}
