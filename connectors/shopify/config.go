package shopify

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional settings.
const (
	// DefaultAPIVersion is the Admin API version used without with.api_version: the stable
	// version current when this connector was last checked against Shopify's reference.
	DefaultAPIVersion = "2026-10"
	// MinAPIVersion is the first version with the @idempotent directive and changeFromQuantity.
	MinAPIVersion   = "2026-01"
	DefaultTimeout  = 30 * time.Second // with.timeout, per HTTP request
	DefaultReason   = "correction"     // with.reason
	DefaultName     = "available"      // with.quantity_name
	DefaultSKUField = "sku"            // with.sku_field
	DefaultLocField = "warehouse"      // with.location_field
	DefaultQtyField = "available"      // with.quantity_field
)

// Reasons are the values with.reason may take: Shopify's documented inventory change reasons,
// as the settings declare them.
var Reasons = func() []string {
	f, _ := connspec.Of[settings]("shopify", "").Field("reason")
	return f.Enum
}()

var (
	versionRE = regexp.MustCompile(`^\d{4}-(01|04|07|10)$`)
	shopRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*\.myshopify\.com$`)
)

// settings is the `with` block of a shopify sink, as declared to the docs, the schema and the
// loader.
type settings struct {
	Shop                  string            `with:"shop" doc:"The shop's domain; or give base_url." example:"my-store.myshopify.com"`
	BaseURL               string            `with:"base_url" doc:"http(s)://host[:port] of the Admin API, instead of shop (a proxy, a test server)."`
	Token                 string            `with:"token,secret" doc:"An Admin API access token; or give client_id and client_secret." example:"${SHOPIFY_TOKEN}"`
	ClientID              string            `with:"client_id" doc:"The client id of a Dev Dashboard app installed in the shop (client credentials grant), with client_secret."`
	ClientSecret          string            `with:"client_secret,secret" doc:"The app's client secret, with client_id." example:"${SHOPIFY_CLIENT_SECRET}"`
	APIVersion            string            `with:"api_version" default:"2026-10" doc:"The Admin API version: YYYY-MM (2026-01 or later) or unstable."`
	QuantityName          string            `with:"quantity_name" default:"available" enum:"available,on_hand" doc:"The inventory quantity set."`
	IgnoreCompareQuantity bool              `with:"ignore_compare_quantity" default:"true" doc:"Set levels whatever Shopify has (the warehouse is the source of truth); false sends compare_field's value as changeFromQuantity."`
	CompareField          string            `with:"compare_field" doc:"With ignore_compare_quantity: false, the record field holding the quantity Shopify is expected to have before the change."`
	Reason                string            `with:"reason" default:"correction" enum:"correction,cycle_count_available,damaged,movement_canceled,movement_created,movement_received,movement_updated,other,promotion,quality_control,received,reservation_created,reservation_deleted,reservation_updated,restock,safety_stock,shrinkage" doc:"The inventory change reason Shopify records."`
	SKUField              string            `with:"sku_field" default:"sku" doc:"The record field holding the SKU."`
	LocationField         string            `with:"location_field" default:"warehouse" doc:"The record field holding the warehouse."`
	QuantityField         string            `with:"quantity_field" default:"available" doc:"The record field holding the quantity."`
	Locations             map[string]string `with:"locations" doc:"Warehouse to location GID; other warehouses are matched to locations by name." example:"{berlin: gid://shopify/Location/123}"`
	Timeout               time.Duration     `with:"timeout" default:"30s" doc:"How long one HTTP request may take."`
	SoftDeleteColumn      string            `with:"soft_delete_column" doc:"Not supported: Shopify has no column to set; use on_delete: delete (sets the level to 0) or ignore."`
}

// config is the validated `with` block of a shopify sink.
type config struct {
	baseURL       string // scheme://host[:port], no trailing slash
	token         string // static Admin API access token, or
	clientID      string // client credentials grant
	clientSecret  string
	apiVersion    string
	name          string // quantity name: available or on_hand
	ignoreCompare bool
	compareField  string
	reason        string
	skuField      string
	locField      string
	qtyField      string
	locations     map[string]string // warehouse → location GID
	timeout       time.Duration
}

// Descriptor is the shopify connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[settings]("shopify", "Sets Shopify inventory levels (inventorySetQuantities, idempotent) from records carrying a SKU, a warehouse and a quantity, paced under the app's GraphQL cost budget."),
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
	c := &config{token: s.Token, clientID: s.ClientID, clientSecret: s.ClientSecret, apiVersion: s.APIVersion,
		name: s.QuantityName, ignoreCompare: s.IgnoreCompareQuantity, compareField: s.CompareField, reason: s.Reason,
		skuField: s.SKUField, locField: s.LocationField, qtyField: s.QuantityField, locations: s.Locations, timeout: s.Timeout}
	if p.SoftDeleteColumn != "" || s.SoftDeleteColumn != "" {
		ps.Add("with.soft_delete_column", "on_delete: soft_delete has no column to set in Shopify; use on_delete: delete (sets the level to 0) or ignore")
	}
	c.baseURL = target(&ps, s.Shop, s.BaseURL)
	checkAuth(&ps, s)
	checkVersion(&ps, s.APIVersion)
	switch {
	case c.ignoreCompare && c.compareField != "":
		ps.Add("with.compare_field", "only used with ignore_compare_quantity: false")
	case !c.ignoreCompare && c.compareField == "" && !ps.Has("with.ignore_compare_quantity"):
		ps.Add("with.compare_field", "required with ignore_compare_quantity: false; the record field holding the quantity Shopify is expected to have before the change")
	}
	for wh, id := range s.Locations {
		if !strings.HasPrefix(id, "gid://shopify/Location/") {
			ps.Add(connspec.Join("with.locations", wh), "expected a location GID such as gid://shopify/Location/123, got %v", id)
		}
	}
	return c, ps.Err()
}

// target checks with.shop or with.base_url (exactly one) and returns the shop's base URL.
func target(ps *connspec.Problems, shop, base string) string {
	switch {
	case shop != "" && base != "":
		ps.Add("with.shop", "give with.shop or with.base_url, not both")
	case shop != "":
		shop = strings.ToLower(shop)
		if !shopRE.MatchString(shop) {
			ps.Add("with.shop", "%q is not a shop domain; expected <store>.myshopify.com", shop)
		}
		return "https://" + shop
	case base != "":
		u, err := url.Parse(base)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			ps.Add("with.base_url", "expected http(s)://host[:port]")
		case u.User != nil || u.RawQuery != "" || strings.Trim(u.Path, "/") != "":
			ps.Add("with.base_url", "expected only scheme, host and port, no path, query or credentials")
		default:
			return u.Scheme + "://" + u.Host
		}
	default:
		ps.Add("with.shop", "required; expected the shop's domain, e.g. my-store.myshopify.com (or with.base_url)")
	}
	return ""
}

// checkAuth checks with.token, or with.client_id and with.client_secret.
func checkAuth(ps *connspec.Problems, s settings) {
	hasTok, hasID, hasSecret := s.Token != "", s.ClientID != "", s.ClientSecret != ""
	switch {
	case hasTok && (hasID || hasSecret):
		ps.Add("with.token", "give with.token or with.client_id and with.client_secret, not both")
	case hasTok || hasID && hasSecret:
	case hasID:
		ps.Add("with.client_secret", "required with with.client_id")
	case hasSecret:
		ps.Add("with.client_id", "required with with.client_secret")
	case !ps.Has("with.token") && !ps.Has("with.client_id") && !ps.Has("with.client_secret"):
		ps.Add("with.token", "required; expected the Admin API access token (or with.client_id and with.client_secret)")
	}
}

// checkVersion checks with.api_version.
func checkVersion(ps *connspec.Problems, v string) {
	switch {
	case v == "unstable" || v == "":
	case !versionRE.MatchString(v):
		ps.Add("with.api_version", "%q is not an API version; expected YYYY-MM with MM 01, 04, 07 or 10, e.g. %s", v, DefaultAPIVersion)
	case v < MinAPIVersion:
		ps.Add("with.api_version", "%s predates the @idempotent directive and changeFromQuantity (%s); use %s or later", v, MinAPIVersion, MinAPIVersion)
	}
}
