package httpsink

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional settings.
const (
	DefaultTimeout  = 10 * time.Second // with.timeout
	DefaultMaxBatch = 500              // with.max_batch
)

// knownSettings are the keys an http sink's `with` block may hold.
var knownSettings = []string{"url", "headers", "secret", "timeout", "max_batch", "soft_delete_column"}

// reservedHeaders are set by the connector and cannot be configured.
var reservedHeaders = []string{"Content-Length", "Host", IdempotencyKeyHeader, SignatureHeader,
	WebhookIDHeader, WebhookTimestampHeader, WebhookSignatureHeader}

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

// parseConfig validates p.With; every error names the offending `with.<setting>`.
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	c := &config{}
	var err error
	if c.url, c.display, err = parseURL(p.With["url"]); err != nil {
		return nil, err
	}
	if c.headers, err = parseHeaders(p.With["headers"]); err != nil {
		return nil, err
	}
	if c.secret, c.key, err = parseSecret(p.With["secret"]); err != nil {
		return nil, err
	}
	if c.timeout, err = parseTimeout(p.With["timeout"]); err != nil {
		return nil, err
	}
	if c.maxBatch, err = parseMaxBatch(p.With["max_batch"]); err != nil {
		return nil, err
	}
	return c, nil
}

// parseURL checks with.url. Errors never quote the URL, which may carry credentials.
func parseURL(v any) (string, string, error) {
	raw, ok := v.(string)
	if !ok || raw == "" {
		return "", "", errors.New("with.url: required; expected the webhook's http:// or https:// URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL
		}
		return "", "", fmt.Errorf("with.url: not a valid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("with.url: scheme %q not supported; expected http:// or https://", u.Scheme)
	}
	if u.Host == "" {
		return "", "", errors.New("with.url: no host; expected http(s)://host[:port]/path")
	}
	return raw, u.Scheme + "://" + u.Host + u.EscapedPath(), nil
}

// parseHeaders validates with.headers, a map of header names to string values.
func parseHeaders(v any) (http.Header, error) {
	h := http.Header{}
	if v == nil {
		return h, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		sm, isStrings := v.(map[string]string)
		if !isStrings {
			return nil, fmt.Errorf("with.headers: expected a map of header names to values, got %T", v)
		}
		m = make(map[string]any, len(sm))
		for k, s := range sm {
			m[k] = s
		}
	}
	for name, val := range m {
		if err := addHeader(h, name, val); err != nil {
			return nil, fmt.Errorf("with.headers.%s: %w", name, err)
		}
	}
	return h, nil
}

// addHeader validates one configured header and adds it to h.
func addHeader(h http.Header, name string, val any) error {
	s, ok := val.(string)
	if !ok {
		return fmt.Errorf("expected a string value, got %T (quote it)", val)
	}
	if !validHeaderName(name) {
		return errors.New("not a valid header name")
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return errors.New("value contains a line break or NUL")
	}
	canonical := http.CanonicalHeaderKey(name)
	if slices.Contains(reservedHeaders, canonical) {
		return errors.New("set by the connector; it cannot be configured")
	}
	h.Set(canonical, s)
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

// parseSecret validates with.secret and returns the keys of both signatures. Errors never quote
// the secret.
func parseSecret(v any) (secret, key []byte, err error) {
	if v == nil {
		return nil, nil, nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, nil, errors.New("with.secret: expected a non-empty string")
	}
	if key, err = StandardKey(s); err != nil {
		return nil, nil, fmt.Errorf("with.secret: %w", err)
	}
	return []byte(s), key, nil
}

// parseTimeout validates with.timeout, a Go duration such as "10s".
func parseTimeout(v any) (time.Duration, error) {
	return sink.DurationSetting("timeout", v, DefaultTimeout)
}

// parseMaxBatch validates with.max_batch, the most records one request carries.
func parseMaxBatch(v any) (int, error) {
	if v == nil {
		return DefaultMaxBatch, nil
	}
	n, ok := toInt(v)
	if !ok || n < 1 {
		return 0, fmt.Errorf("with.max_batch: %v is not a positive integer", v)
	}
	return n, nil
}

// toInt accepts the integer forms YAML and JSON decoders produce.
func toInt(v any) (int, bool) { return sink.IntValue(v) }
