package redis

import (
	"context"
	"errors"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// The storage modes of with.mode.
const (
	ModeHash = "hash" // one Redis hash per row, one hash field per target field (the default)
	ModeJSON = "json" // one Redis string per row holding a JSON object of the target fields
)

// settings is the `with` block of a redis sink, as declared to the docs, the schema and the loader.
type settings struct {
	URL              string        `with:"url,required,secret" doc:"The server: redis://[user:password@]host:port[/db] or rediss:// for TLS." example:"redis://:${REDIS_PASSWORD}@cache:6379/0"`
	Key              string        `with:"key,required" doc:"The key template: text with a {field} placeholder for each of the sink's key fields." example:"stock:{sku}:{warehouse}"`
	Mode             string        `with:"mode" default:"hash" enum:"hash,json" doc:"hash: one hash per row, a hash field per target field; json: one string per row holding a JSON object."`
	TTL              time.Duration `with:"ttl" min:"1ms" doc:"Expiry of every key written; default: none." example:"24h"`
	DB               int           `with:"db" min:"0" doc:"The database number; overrides the URL's path."`
	SoftDeleteColumn string        `with:"soft_delete_column" doc:"With on_delete: soft_delete, the field set to true in place of a delete."`
}

// config is the validated `with` block of a redis sink.
type config struct {
	opts *goredis.Options
	key  *keyTemplate
	mode string
	ttl  time.Duration // 0: no expiry
	// redacted is the URL without user info, path or query, for logs and errors.
	redacted string
}

// Descriptor is the redis connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[settings]("redis", "Writes each row to a Redis key made from its key fields, as a hash or a JSON string; deletes delete the key. It connects on the first batch."),
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
	c := &config{mode: s.Mode, ttl: s.TTL}
	if s.URL != "" {
		c.opts, c.redacted = parseURL(s.URL, &ps)
	}
	if c.opts != nil && p.With["db"] != nil && !ps.Has("with.db") {
		c.opts.DB = s.DB
	}
	if s.Key != "" {
		t, err := parseKeyTemplate(s.Key)
		if err == nil {
			err = t.check(p.Key)
		}
		if err != nil {
			ps.Add("with.key", "%v", err)
		}
		c.key = t
	}
	return c, ps.Err()
}

// parseURL checks with.url and turns it into client options. Errors never quote the URL, which
// may carry a password.
func parseURL(raw string, ps *connspec.Problems) (*goredis.Options, string) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL, password included
		}
		ps.Add("with.url", "not a valid URL: %v", err)
		return nil, ""
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		ps.Add("with.url", "scheme %q not supported; expected redis:// or rediss://", u.Scheme)
		return nil, ""
	}
	opts, err := goredis.ParseURL(raw)
	if err != nil {
		ps.Add("with.url", "%v", err)
		return nil, ""
	}
	return opts, u.Scheme + "://" + opts.Addr
}
