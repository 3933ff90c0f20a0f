package salesforce

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional settings.
const (
	DefaultLoginURL       = "https://login.salesforce.com" // with.login_url
	DefaultAPIVersion     = "v61.0"                        // with.api_version
	DefaultBulkThreshold  = 2000                           // with.bulk_threshold
	DefaultMaxConcurrency = 4                              // with.max_concurrency
	DefaultTimeout        = 60 * time.Second               // with.timeout
	DefaultLimitBackoff   = 60 * time.Second               // with.limit_backoff
	DefaultBulkTimeout    = 30 * time.Minute               // with.bulk_timeout
)

// The authentication flows of with.auth.
const (
	AuthClientCredentials = "client_credentials" // OAuth 2.0 client credentials: client_id + client_secret
	AuthJWT               = "jwt"                // OAuth 2.0 JWT bearer: client_id + username + private_key_file
)

// knownSettings are the keys a salesforce sink's `with` block may hold.
var knownSettings = []string{
	"login_url", "auth", "client_id", "client_secret", "username", "private_key_file", "jwt_audience",
	"api_version", "sobject", "external_id_field", "bulk_threshold", "max_concurrency", "timeout",
	"requests_per_second", "limit_backoff", "bulk_timeout",
}

var (
	apiNamePattern    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	apiVersionPattern = regexp.MustCompile(`^v?([0-9]+\.[0-9])$`)
)

// config is the validated `with` block of a salesforce sink.
type config struct {
	loginURL       string // no trailing slash
	auth           string
	clientID       string
	clientSecret   string
	username       string
	privateKey     *rsa.PrivateKey
	audience       string
	apiVersion     string // "v61.0"
	sobject        string
	externalID     string
	keyField       string // the sink's single key field, whose value is the external id
	bulkThreshold  int
	maxConcurrency int
	timeout        time.Duration
	requestsPerSec float64 // 0: no client-side pacing
	limitBackoff   time.Duration
	bulkTimeout    time.Duration
}

// parseConfig validates p; every error names the offending `with.<setting>` (or `key`).
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	c := &config{}
	steps := []func(map[string]any) error{c.parseLogin, c.parseAuth, c.parseTarget, c.parseTuning}
	for _, step := range steps {
		if err := step(p.With); err != nil {
			return nil, err
		}
	}
	if len(p.Key) != 1 {
		return nil, fmt.Errorf("key: the salesforce connector needs exactly one key field, whose value is the external id "+
			"written to with.external_id_field (%s); got %d fields", c.externalID, len(p.Key))
	}
	c.keyField = p.Key[0]
	return c, nil
}

// parseLogin validates with.login_url and with.api_version.
func (c *config) parseLogin(w map[string]any) error {
	raw, err := optString(w, "login_url", DefaultLoginURL)
	if err != nil {
		return err
	}
	if c.loginURL, err = checkURL(raw); err != nil {
		return fmt.Errorf("with.login_url: %w", err)
	}
	v, err := optString(w, "api_version", DefaultAPIVersion)
	if err != nil {
		return err
	}
	m := apiVersionPattern.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("with.api_version: %q is not an API version; expected text such as %q", v, DefaultAPIVersion)
	}
	c.apiVersion = "v" + m[1]
	return nil
}

// checkURL accepts an http(s) URL with a host and returns it without a trailing slash.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", errors.New("expected an https://host URL such as https://login.salesforce.com")
	}
	if u.User != nil || u.RawQuery != "" {
		return "", errors.New("must not carry credentials or a query")
	}
	return strings.TrimRight(raw, "/"), nil
}

// parseAuth validates the credentials of the chosen OAuth flow.
func (c *config) parseAuth(w map[string]any) error {
	def := AuthClientCredentials
	if w["private_key_file"] != nil {
		def = AuthJWT
	}
	var err error
	if c.auth, err = optString(w, "auth", def); err != nil {
		return err
	}
	if c.clientID, err = reqString(w, "client_id", "the connected app's consumer key"); err != nil {
		return err
	}
	switch c.auth {
	case AuthClientCredentials:
		c.clientSecret, err = reqString(w, "client_secret", "the connected app's consumer secret (auth client_credentials)")
		return err
	case AuthJWT:
		return c.parseJWT(w)
	}
	return fmt.Errorf("with.auth: %q is not supported; expected %s or %s", c.auth, AuthClientCredentials, AuthJWT)
}

// parseJWT validates the JWT bearer flow's settings and loads the private key.
func (c *config) parseJWT(w map[string]any) error {
	var err error
	if c.username, err = reqString(w, "username", "the Salesforce username the JWT is issued for (auth jwt)"); err != nil {
		return err
	}
	file, err := reqString(w, "private_key_file", "the PEM file of the RSA key whose certificate the connected app holds (auth jwt)")
	if err != nil {
		return err
	}
	if c.privateKey, err = loadRSAKey(file); err != nil {
		return fmt.Errorf("with.private_key_file: %w", err)
	}
	if c.audience, err = optString(w, "jwt_audience", c.loginURL); err != nil {
		return err
	}
	return nil
}

// loadRSAKey reads a PEM RSA private key (PKCS #1 or PKCS #8). Errors never quote the file.
func loadRSAKey(file string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found; expected an RSA private key in PEM form")
	}
	if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not an RSA private key (PKCS #1 or PKCS #8, unencrypted)")
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA private key; Salesforce signs with RS256 only", parsed)
	}
	return key, nil
}

// parseTarget validates with.sobject and with.external_id_field.
func (c *config) parseTarget(w map[string]any) error {
	var err error
	if c.sobject, err = reqName(w, "sobject", "the object's API name, such as Lead or Warehouse__c"); err != nil {
		return err
	}
	c.externalID, err = reqName(w, "external_id_field", "the API name of an External ID field, such as Warehouse_Id__c")
	return err
}

// parseTuning validates the optional limits and durations.
func (c *config) parseTuning(w map[string]any) error {
	var err error
	if c.bulkThreshold, err = optPositiveInt(w, "bulk_threshold", DefaultBulkThreshold); err != nil {
		return err
	}
	if c.maxConcurrency, err = optPositiveInt(w, "max_concurrency", DefaultMaxConcurrency); err != nil {
		return err
	}
	if c.requestsPerSec, err = optRate(w, "requests_per_second"); err != nil {
		return err
	}
	durations := []struct {
		key string
		dst *time.Duration
		def time.Duration
	}{{"timeout", &c.timeout, DefaultTimeout}, {"limit_backoff", &c.limitBackoff, DefaultLimitBackoff},
		{"bulk_timeout", &c.bulkTimeout, DefaultBulkTimeout}}
	for _, d := range durations {
		if *d.dst, err = optDuration(w, d.key, d.def); err != nil {
			return err
		}
	}
	return nil
}

// reqString returns a required, non-empty string setting.
func reqString(w map[string]any, key, what string) (string, error) {
	s, err := optString(w, key, "")
	if err == nil && s == "" {
		err = fmt.Errorf("with.%s: required; expected %s", key, what)
	}
	return s, err
}

// reqName returns a required Salesforce API name.
func reqName(w map[string]any, key, what string) (string, error) {
	s, err := reqString(w, key, what)
	if err == nil && !apiNamePattern.MatchString(s) {
		err = fmt.Errorf("with.%s: %q is not an API name; expected %s", key, s, what)
	}
	return s, err
}

// optString returns a string setting, or def when it is absent.
func optString(w map[string]any, key, def string) (string, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return def, nil
	}
	s, isString := v.(string)
	if !isString {
		return "", fmt.Errorf("with.%s: expected text, got %T", key, v)
	}
	return s, nil
}

// optPositiveInt returns a positive integer setting, or def when it is absent.
func optPositiveInt(w map[string]any, key string, def int) (int, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return def, nil
	}
	n, isInt := toInt(v)
	if !isInt || n < 1 {
		return 0, fmt.Errorf("with.%s: %v is not a positive integer", key, v)
	}
	return n, nil
}

// optRate returns a positive number setting, or 0 when it is absent.
func optRate(w map[string]any, key string) (float64, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return 0, nil
	}
	f, isNumber := toFloat(v)
	if !isNumber || f <= 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("with.%s: %v is not a positive number", key, v)
	}
	return f, nil
}

// optDuration returns a positive duration setting such as "30s", or def when it is absent.
func optDuration(w map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return def, nil
	}
	d, isDuration := v.(time.Duration)
	if !isDuration {
		s, isString := v.(string)
		if !isString {
			return 0, fmt.Errorf(`with.%s: %v is not a duration; expected text such as "30s"`, key, v)
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf(`with.%s: expected a duration such as "30s": %w`, key, err)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("with.%s: %s must be positive", key, d)
	}
	return d, nil
}

// toInt accepts the integer forms YAML and JSON decoders produce.
func toInt(v any) (int, bool) { return sink.IntValue(v) }

// toFloat accepts the number forms YAML and JSON decoders produce.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n)
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil && !math.IsNaN(f)
	}
	i, ok := toInt(v)
	return float64(i), ok
}
