package redis

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// The storage modes of with.mode.
const (
	ModeHash = "hash" // one Redis hash per row, one hash field per target field (the default)
	ModeJSON = "json" // one Redis string per row holding a JSON object of the target fields
)

// knownSettings are the keys a redis sink's `with` block may hold.
var knownSettings = []string{"url", "key", "mode", "ttl", "db", "soft_delete_column"}

// config is the validated `with` block of a redis sink.
type config struct {
	opts *goredis.Options
	key  *keyTemplate
	mode string
	ttl  time.Duration // 0: no expiry
	// redacted is the URL without user info, path or query, for logs and errors.
	redacted string
}

// parseConfig validates p.With; every error names the offending `with.<setting>`.
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	c := &config{}
	var err error
	if c.opts, c.redacted, err = parseURL(p.With["url"]); err != nil {
		return nil, err
	}
	if c.key, err = parseKeySetting(p.With["key"], p.Key); err != nil {
		return nil, err
	}
	if c.mode, err = parseMode(p.With["mode"]); err != nil {
		return nil, err
	}
	if c.ttl, err = parseTTL(p.With["ttl"]); err != nil {
		return nil, err
	}
	if err = applyDB(c.opts, p.With["db"]); err != nil {
		return nil, err
	}
	return c, nil
}

// parseURL checks with.url and turns it into client options. Errors never quote the URL, which
// may carry a password.
func parseURL(v any) (*goredis.Options, string, error) {
	raw, ok := v.(string)
	if !ok || raw == "" {
		return nil, "", errors.New("with.url: required; expected redis://[user:password@]host:port[/db] or rediss://…")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL, password included
		}
		return nil, "", fmt.Errorf("with.url: not a valid URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", fmt.Errorf("with.url: scheme %q not supported; expected redis:// or rediss://", u.Scheme)
	}
	opts, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, "", fmt.Errorf("with.url: %w", err)
	}
	return opts, u.Scheme + "://" + opts.Addr, nil
}

// parseKeySetting parses with.key and checks its placeholders against the sink's key fields.
func parseKeySetting(v any, keyFields []string) (*keyTemplate, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, errors.New(`with.key: required; expected a key template such as "stock:{sku}:{warehouse}"`)
	}
	t, err := parseKeyTemplate(s)
	if err != nil {
		return nil, fmt.Errorf("with.key: %w", err)
	}
	if err := t.check(keyFields); err != nil {
		return nil, fmt.Errorf("with.key: %w", err)
	}
	return t, nil
}

// parseMode validates with.mode.
func parseMode(v any) (string, error) {
	if v == nil {
		return ModeHash, nil
	}
	s, _ := v.(string)
	if s != ModeHash && s != ModeJSON {
		return "", fmt.Errorf("with.mode: %v not supported; expected %s or %s", v, ModeHash, ModeJSON)
	}
	return s, nil
}

// parseTTL validates with.ttl, a Go duration such as "24h" or "90s".
func parseTTL(v any) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if d, ok := v.(time.Duration); ok {
		return checkTTL(d)
	}
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf(`with.ttl: %v is not a duration; expected text such as "24h" or "90s"`, v)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`with.ttl: expected a duration such as "24h" or "90s": %w`, err)
	}
	return checkTTL(d)
}

// checkTTL rejects durations Redis cannot express as a positive number of milliseconds.
func checkTTL(d time.Duration) (time.Duration, error) {
	if d < time.Millisecond {
		return 0, fmt.Errorf("with.ttl: %s is too short; expected at least 1ms", d)
	}
	return d, nil
}

// applyDB sets the database number from with.db, which overrides the URL's path.
func applyDB(opts *goredis.Options, v any) error {
	if v == nil {
		return nil
	}
	n, ok := toInt(v)
	if !ok || n < 0 {
		return fmt.Errorf("with.db: %v is not a database number; expected an integer from 0", v)
	}
	opts.DB = n
	return nil
}

// toInt accepts the integer forms YAML and JSON decoders produce.
func toInt(v any) (int, bool) { return sink.IntValue(v) }
