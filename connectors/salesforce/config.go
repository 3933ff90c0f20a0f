package salesforce

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional withBlock.
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

var (
	apiNamePattern    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	apiVersionPattern = regexp.MustCompile(`^v?([0-9]+\.[0-9])$`)
)

// withBlock is the `with` block of a salesforce sink, as declared to the docs, the schema and the
// loader.
type withBlock struct {
	LoginURL          string        `with:"login_url" default:"https://login.salesforce.com" doc:"Where to log in: https://login.salesforce.com, https://test.salesforce.com or the org's My Domain URL."`
	Auth              string        `with:"auth" enum:"client_credentials,jwt" doc:"The OAuth 2.0 flow; default: jwt when private_key_file is given, else client_credentials."`
	ClientID          string        `with:"client_id,required" doc:"The connected app's consumer key." example:"${SF_CLIENT_ID}"`
	ClientSecret      string        `with:"client_secret,secret" doc:"The connected app's consumer secret (auth client_credentials)." example:"${SF_CLIENT_SECRET}"`
	Username          string        `with:"username" doc:"The Salesforce username the JWT is issued for (auth jwt)." example:"integration@example.com"`
	PrivateKeyFile    string        `with:"private_key_file" doc:"The PEM file of the RSA key whose certificate the connected app holds (auth jwt); read when the sink starts." example:"/run/secrets/sf.pem"`
	JWTAudience       string        `with:"jwt_audience" doc:"The JWT's audience; default: login_url."`
	APIVersion        string        `with:"api_version" default:"v61.0" doc:"The REST API version."`
	SObject           string        `with:"sobject,required" doc:"The object's API name." example:"Warehouse__c"`
	ExternalIDField   string        `with:"external_id_field,required" doc:"The API name of the External ID field records are upserted by; the sink's only key field gives its value." example:"Warehouse_Id__c"`
	BulkThreshold     int           `with:"bulk_threshold" default:"2000" min:"1" doc:"Batches of at least this many records go through Bulk API 2.0; smaller ones through sObject Collections."`
	MaxConcurrency    int           `with:"max_concurrency" default:"4" min:"1" doc:"The most requests in flight."`
	Timeout           time.Duration `with:"timeout" default:"60s" doc:"How long one HTTP request may take."`
	RequestsPerSecond float64       `with:"requests_per_second" doc:"Pace requests to this many a second, across the sink's workers; default: no pacing."`
	LimitBackoff      time.Duration `with:"limit_backoff" default:"60s" doc:"How long to wait when the org's API limit is reached."`
	BulkTimeout       time.Duration `with:"bulk_timeout" default:"30m" doc:"How long a bulk job may take."`
}

// config is the validated `with` block of a salesforce sink.
type config struct {
	loginURL       string // no trailing slash
	auth           string
	clientID       string
	clientSecret   string
	username       string
	keyFile        string
	privateKey     *rsa.PrivateKey // loaded from keyFile when the connector opens
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

// Descriptor is the salesforce connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[withBlock]("salesforce", "Upserts Salesforce records by an External ID field (sObject Collections, or Bulk API 2.0 for large batches) and deletes them, logging in with OAuth 2.0 client credentials or JWT bearer."),
		Check: Check,
		Configure: func(p sink.Params) (sink.Opener, error) {
			cfg, err := parseConfig(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(context.Context) (sink.Connector, error) { return newConnector(cfg, p) }), nil
		},
	}
}

// parseConfig validates p, reporting every problem at once. It reads no file: the JWT key is
// loaded when the connector opens.
func parseConfig(p sink.Params) (*config, error) {
	s, ps := connspec.Decode[withBlock](p.With)
	c := &config{clientID: s.ClientID, clientSecret: s.ClientSecret, username: s.Username, keyFile: s.PrivateKeyFile,
		sobject: s.SObject, externalID: s.ExternalIDField, bulkThreshold: s.BulkThreshold, maxConcurrency: s.MaxConcurrency,
		timeout: s.Timeout, requestsPerSec: s.RequestsPerSecond, limitBackoff: s.LimitBackoff, bulkTimeout: s.BulkTimeout}
	var err error
	if c.loginURL, err = checkURL(s.LoginURL); err != nil {
		ps.Add("with.login_url", "%v", err)
	}
	if m := apiVersionPattern.FindStringSubmatch(s.APIVersion); m != nil {
		c.apiVersion = "v" + m[1]
	} else if !ps.Has("with.api_version") {
		ps.Add("with.api_version", "%q is not an API version; expected text such as %q", s.APIVersion, DefaultAPIVersion)
	}
	c.audience = orDefault(s.JWTAudience, c.loginURL)
	c.auth = checkAuth(&ps, s)
	checkAPIName(&ps, "with.sobject", s.SObject, "the object's API name, such as Lead or Warehouse__c")
	checkAPIName(&ps, "with.external_id_field", s.ExternalIDField, "the API name of an External ID field, such as Warehouse_Id__c")
	if p.With["requests_per_second"] != nil && s.RequestsPerSecond <= 0 && !ps.Has("with.requests_per_second") {
		ps.Add("with.requests_per_second", "%v is not a positive number", s.RequestsPerSecond)
	}
	if len(p.Key) != 1 {
		ps.Add("key", "the salesforce connector needs exactly one key field, whose value is the external id "+
			"written to with.external_id_field (%s); got %d fields", s.ExternalIDField, len(p.Key))
	} else {
		c.keyField = p.Key[0]
	}
	return c, ps.Err()
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
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

// checkAuth checks that the chosen OAuth flow has its credentials, and returns the flow.
func checkAuth(ps *connspec.Problems, s withBlock) string {
	auth := s.Auth
	if auth == "" {
		auth = AuthClientCredentials
		if s.PrivateKeyFile != "" {
			auth = AuthJWT
		}
	}
	need := func(key, value, what string) {
		if value == "" && !ps.Has(key) {
			ps.Add(key, "required; expected %s", what)
		}
	}
	switch {
	case s.Auth == "" && s.ClientSecret == "" && s.Username == "" && s.PrivateKeyFile == "" && !ps.Has("with.client_secret") && !ps.Has("with.auth"):
		ps.Add("with.client_secret", "required: no way to log in is given; expected client_secret (auth client_credentials), "+
			"or username and private_key_file (auth jwt)")
	case auth == AuthClientCredentials:
		need("with.client_secret", s.ClientSecret, "the connected app's consumer secret (auth client_credentials)")
	case auth == AuthJWT:
		need("with.username", s.Username, "the Salesforce username the JWT is issued for (auth jwt)")
		need("with.private_key_file", s.PrivateKeyFile, "the PEM file of the RSA key whose certificate the connected app holds (auth jwt)")
	}
	return auth
}

// checkAPIName checks a Salesforce API name (empty: missing, already reported).
func checkAPIName(ps *connspec.Problems, path, s, what string) {
	if s != "" && !apiNamePattern.MatchString(s) {
		ps.Add(path, "%q is not an API name; expected %s", s, what)
	}
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
