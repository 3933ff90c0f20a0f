package shopify

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

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

// Reasons are the values with.reason may take: Shopify's documented inventory change reasons.
var Reasons = []string{
	"correction", "cycle_count_available", "damaged", "movement_canceled", "movement_created",
	"movement_received", "movement_updated", "other", "promotion", "quality_control", "received",
	"reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
	"shrinkage",
}

// knownSettings are the keys a shopify sink's `with` block may hold.
var knownSettings = []string{
	"shop", "base_url", "token", "client_id", "client_secret", "api_version", "quantity_name",
	"ignore_compare_quantity", "compare_field", "reason", "sku_field", "location_field",
	"quantity_field", "locations", "timeout", "soft_delete_column",
}

var (
	versionRE = regexp.MustCompile(`^\d{4}-(01|04|07|10)$`)
	shopRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*\.myshopify\.com$`)
)

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

// parseConfig validates p.With; every error names the offending `with.<setting>`.
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	if p.SoftDeleteColumn != "" || p.With["soft_delete_column"] != nil {
		return nil, errors.New("with.soft_delete_column: on_delete: soft_delete has no column to set in Shopify; use on_delete: delete (sets the level to 0) or ignore")
	}
	c := &config{}
	steps := []func(map[string]any) error{c.parseTarget, c.parseAuth, c.parseVersion, c.parseQuantity,
		c.parseFields, c.parseLocations, c.parseTimeout}
	for _, step := range steps {
		if err := step(p.With); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// parseTarget reads with.shop or with.base_url (exactly one).
func (c *config) parseTarget(w map[string]any) error {
	shop, hasShop, err := optString(w, "shop")
	if err != nil {
		return err
	}
	base, hasBase, err := optString(w, "base_url")
	if err != nil {
		return err
	}
	switch {
	case hasShop && hasBase:
		return errors.New("with.shop: give with.shop or with.base_url, not both")
	case hasShop:
		shop = strings.ToLower(shop)
		if !shopRE.MatchString(shop) {
			return fmt.Errorf("with.shop: %q is not a shop domain; expected <store>.myshopify.com", shop)
		}
		c.baseURL = "https://" + shop
		return nil
	case hasBase:
		c.baseURL, err = parseBaseURL(base)
		return err
	}
	return errors.New("with.shop: required; expected the shop's domain, e.g. my-store.myshopify.com (or with.base_url)")
}

func parseBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("with.base_url: expected http(s)://host[:port]")
	}
	if u.User != nil || u.RawQuery != "" || strings.Trim(u.Path, "/") != "" {
		return "", errors.New("with.base_url: expected only scheme, host and port, no path, query or credentials")
	}
	return u.Scheme + "://" + u.Host, nil
}

// parseAuth reads with.token, or with.client_id and with.client_secret.
func (c *config) parseAuth(w map[string]any) error {
	var hasTok, hasID, hasSecret bool
	var err error
	if c.token, hasTok, err = optString(w, "token"); err != nil {
		return err
	}
	if c.clientID, hasID, err = optString(w, "client_id"); err != nil {
		return err
	}
	if c.clientSecret, hasSecret, err = optString(w, "client_secret"); err != nil {
		return err
	}
	switch {
	case hasTok && (hasID || hasSecret):
		return errors.New("with.token: give with.token or with.client_id and with.client_secret, not both")
	case hasTok:
		return nil
	case hasID != hasSecret && hasID:
		return errors.New("with.client_secret: required with with.client_id")
	case hasID != hasSecret:
		return errors.New("with.client_id: required with with.client_secret")
	case hasID:
		return nil
	}
	return errors.New("with.token: required; expected the Admin API access token (or with.client_id and with.client_secret)")
}

func (c *config) parseVersion(w map[string]any) error {
	v, ok, err := optString(w, "api_version")
	if err != nil || !ok {
		c.apiVersion = DefaultAPIVersion
		return err
	}
	switch {
	case v == "unstable":
	case !versionRE.MatchString(v):
		return fmt.Errorf("with.api_version: %q is not an API version; expected YYYY-MM with MM 01, 04, 07 or 10, e.g. %s", v, DefaultAPIVersion)
	case v < MinAPIVersion:
		return fmt.Errorf("with.api_version: %s predates the @idempotent directive and changeFromQuantity (%s); use %s or later", v, MinAPIVersion, MinAPIVersion)
	}
	c.apiVersion = v
	return nil
}

// parseQuantity reads quantity_name, reason, ignore_compare_quantity and compare_field.
func (c *config) parseQuantity(w map[string]any) error {
	var err error
	if c.name, err = enumString(w, "quantity_name", DefaultName, []string{"available", "on_hand"}); err != nil {
		return err
	}
	if c.reason, err = enumString(w, "reason", DefaultReason, Reasons); err != nil {
		return err
	}
	c.ignoreCompare = true
	if v, ok := w["ignore_compare_quantity"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return fmt.Errorf("with.ignore_compare_quantity: expected true or false, got %v", v)
		}
		c.ignoreCompare = b
	}
	field, hasField, err := optString(w, "compare_field")
	switch {
	case err != nil:
		return err
	case c.ignoreCompare && hasField:
		return errors.New("with.compare_field: only used with ignore_compare_quantity: false")
	case !c.ignoreCompare && !hasField:
		return errors.New("with.compare_field: required with ignore_compare_quantity: false; the record field holding the quantity Shopify is expected to have before the change")
	}
	c.compareField = field
	return nil
}

func (c *config) parseFields(w map[string]any) error {
	var err error
	if c.skuField, err = fieldName(w, "sku_field", DefaultSKUField); err != nil {
		return err
	}
	if c.locField, err = fieldName(w, "location_field", DefaultLocField); err != nil {
		return err
	}
	c.qtyField, err = fieldName(w, "quantity_field", DefaultQtyField)
	return err
}

// parseLocations reads with.locations, a map of warehouse to location GID.
func (c *config) parseLocations(w map[string]any) error {
	v, ok := w["locations"]
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		sm, isStrings := v.(map[string]string)
		if !isStrings {
			return fmt.Errorf("with.locations: expected a map of warehouse to location GID, got %T", v)
		}
		m = make(map[string]any, len(sm))
		for k, s := range sm {
			m[k] = s
		}
	}
	c.locations = make(map[string]string, len(m))
	for wh, id := range m {
		s, isString := id.(string)
		if !isString || !strings.HasPrefix(s, "gid://shopify/Location/") {
			return fmt.Errorf("with.locations.%s: expected a location GID such as gid://shopify/Location/123, got %v", wh, id)
		}
		c.locations[wh] = s
	}
	return nil
}

func (c *config) parseTimeout(w map[string]any) error {
	v, ok := w["timeout"]
	if !ok || v == nil {
		c.timeout = DefaultTimeout
		return nil
	}
	d, isDur := v.(time.Duration)
	if !isDur {
		s, isString := v.(string)
		if !isString {
			return fmt.Errorf(`with.timeout: %v is not a duration; expected text such as "30s"`, v)
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf(`with.timeout: expected a duration such as "30s": %w`, err)
		}
	}
	if d <= 0 {
		return fmt.Errorf("with.timeout: %s must be positive", d)
	}
	c.timeout = d
	return nil
}

// optString reads an optional non-empty string setting.
func optString(w map[string]any, key string) (string, bool, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return "", false, nil
	}
	s, isString := v.(string)
	if !isString || s == "" {
		return "", false, fmt.Errorf("with.%s: expected a non-empty string", key)
	}
	return s, true, nil
}

func enumString(w map[string]any, key, def string, allowed []string) (string, error) {
	s, ok, err := optString(w, key)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return def, nil
	case !slices.Contains(allowed, s):
		return "", fmt.Errorf("with.%s: %q is not one of %s", key, s, strings.Join(allowed, ", "))
	}
	return s, nil
}

func fieldName(w map[string]any, key, def string) (string, error) {
	s, ok, err := optString(w, key)
	if !ok && err == nil {
		s = def
	}
	return s, err
}
