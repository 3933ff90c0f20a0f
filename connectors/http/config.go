package httpsink

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional settings.
const (
	DefaultTimeout  = 10 * time.Second // with.timeout
	DefaultMaxBatch = 500              // with.max_batch
)

// reservedHeaders are set by the connector and cannot be configured.
var reservedHeaders = []string{"Content-Length", "Host", IdempotencyKeyHeader, SignatureHeader,
	WebhookIDHeader, WebhookTimestampHeader, WebhookSignatureHeader}

// settings is the `with` block of an http sink, as declared to the docs, the schema and the loader.
type settings struct {
	URL              string            `with:"url,required,secret" doc:"The webhook's http:// or https:// URL. It may carry credentials: it is never logged whole." example:"https://hooks.example.com/backflow"`
	Headers          map[string]string `with:"headers" doc:"Headers added to every request, e.g. Authorization." example:"{Authorization: \"Bearer ${HOOK_TOKEN}\"}"`
	Secret           string            `with:"secret,secret" doc:"Signs every request: webhook-signature (Standard Webhooks; a whsec_<base64> secret is decoded first) and X-Backflow-Signature (sha256 HMAC)." example:"${HOOK_SECRET}"`
	Timeout          time.Duration     `with:"timeout" default:"10s" doc:"How long one request may take."`
	MaxBatch         int               `with:"max_batch" default:"500" min:"1" doc:"The most records one request carries."`
	SoftDeleteColumn string            `with:"soft_delete_column" doc:"With on_delete: soft_delete, the field set to true in place of a delete."`
}

// config is the validated `with` block of an http sink.
type config struct {
	url      string
	display  string // scheme://host/path: no user info, no query, for logs and errors
	headers  http.Header
	secret   []byte // as configured: the X-Backflow-Signature key
	key      []byte // the Standard Webhooks key (StandardKey)
	timeout  time.Duration
	maxBatch int
}

// Descriptor is the http connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec: connspec.Of[settings]("http", "POSTs each batch as JSON to a webhook, signed, with an idempotency key."),
		Configure: func(p sink.Params) (sink.Opener, error) {
			cfg, err := parseConfig(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(context.Context) (sink.Connector, error) { return newConnector(cfg, p), nil }), nil
		},
	}
}

// parseConfig validates p.With, reporting every problem at once.
func parseConfig(p sink.Params) (*config, error) {
	s, ps := connspec.Decode[settings](p.With)
	c := &config{timeout: s.Timeout, maxBatch: s.MaxBatch, headers: http.Header{}}
	if s.URL != "" {
		c.display = checkURL(s.URL, &ps)
		c.url = s.URL
	}
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		if err := addHeader(c.headers, name, s.Headers[name]); err != nil {
			ps.Add(connspec.Join("with.headers", name), "%v", err)
		}
	}
	if s.Secret != "" {
		var err error
		if c.key, err = StandardKey(s.Secret); err != nil {
			ps.Add("with.secret", "%v", err)
		}
		c.secret = []byte(s.Secret)
	}
	return c, ps.Err()
}

// checkURL checks with.url and returns it for display: scheme://host/path. Errors never quote
// the URL, which may carry credentials.
func checkURL(raw string, ps *connspec.Problems) string {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL
		}
		ps.Add("with.url", "not a valid URL: %v", err)
		return ""
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		ps.Add("with.url", "scheme %q not supported; expected http:// or https://", u.Scheme)
	case u.Host == "":
		ps.Add("with.url", "no host; expected http(s)://host[:port]/path")
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// addHeader validates one configured header and adds it to h.
func addHeader(h http.Header, name, val string) error {
	if !validHeaderName(name) {
		return errors.New("not a valid header name")
	}
	if strings.ContainsAny(val, "\r\n\x00") {
		return errors.New("value contains a line break or NUL")
	}
	canonical := http.CanonicalHeaderKey(name)
	if slices.Contains(reservedHeaders, canonical) {
		return errors.New("set by the connector; it cannot be configured")
	}
	h.Set(canonical, val)
	return nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
