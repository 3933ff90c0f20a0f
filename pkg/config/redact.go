package config

import (
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Mask is what redaction puts in place of a secret.
const Mask = "xxxxx"

var (
	schemeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)
	// Space around the '=' is what checkDSN trims (unicode.IsSpace), which \s alone is not:
	// "password\v=secret" is a valid DSN too.
	dsnPasswordRe = regexp.MustCompile(`(?i)\b((?:ssl)?password[\s\v\x{85}\p{Z}]*=[\s\v\x{85}\p{Z}]*)('(?:[^'\\]|\\.)*'|[^\s\v\x{85}\p{Z}']\S*|)`)
	queryParamRe  = regexp.MustCompile(`(?i)([?&](?:ssl)?(?:password|passwd|pwd|token|access_token|api_key|apikey|secret|client_secret)=)[^&#]*`)
)

// secretWords mark keys of a sink's "with" whose values are secrets.
var secretWords = []string{"password", "passwd", "token", "secret", "key", "credential", "auth"}

// RedactURL hides the password in a connection string so it can be logged:
// "postgres://u:secret@h/db" becomes "postgres://u:xxxxx@h/db", password-like query
// parameters ("?password=…", "&token=…") are masked, and in a key=value DSN
// "password=secret" becomes "password=xxxxx". Other text is returned unchanged.
func RedactURL(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 || !schemeRe.MatchString(s[:i]) {
		return dsnPasswordRe.ReplaceAllString(s, "${1}"+Mask)
	}
	return queryParamRe.ReplaceAllString(redactUserinfo(s, i+len("://")), "${1}"+Mask)
}

// redactUserinfo masks the password of a URL whose authority starts at start.
func redactUserinfo(s string, start int) string {
	rest := s[start:]
	// An '@' after the authority makes the URL ambiguous: "s://u:12#x@h" parses as host u, port
	// 12 and fragment "x@h", but was most likely written with the password "12#x", '#' (or '/',
	// '?') unescaped. Such URLs are masked as unparsable ones are.
	end := strings.IndexAny(rest, "/?#")
	if u, err := url.Parse(s); err == nil && (end < 0 || !strings.Contains(rest[end:], "@")) {
		if _, ok := u.User.Password(); !ok {
			return s
		}
		u.User = url.UserPassword(u.User.Username(), Mask)
		return u.String()
	}
	// Unparsable, typically a password with unescaped '/', '#' or '@': mask from the first ':'
	// of the user info to the last '@', erring on the side of hiding too much (a password may
	// hold an '@' after a '#', so no '@' can be told apart from the one that ends it).
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return s
	}
	return s[:start] + user + ":" + Mask + rest[at:]
}

// Redacted returns a deep copy of p that is safe to log: connection URLs have their passwords
// masked, SASL and schema registry passwords and http.token are replaced by Mask, and in each sink's "with"
// every value under a key containing password, token, secret, key, credential or auth is
// replaced by Mask while every other string goes through RedactURL.
func (p *Pipeline) Redacted() *Pipeline {
	q := *p
	q.Source.Postgres = p.Source.Postgres.redacted()
	q.Kafka = p.Kafka.redacted()
	q.Sinks = slices.Clone(p.Sinks)
	for i := range q.Sinks {
		q.Sinks[i] = p.Sinks[i].redacted()
	}
	q.HTTP.Token = mask(p.HTTP.Token)
	return &q
}

func (pg Postgres) redacted() Postgres {
	pg.URL = RedactURL(pg.URL)
	pg.Tables = slices.Clone(pg.Tables)
	if pg.Keys != nil {
		keys := make(map[string][]string, len(pg.Keys))
		for t, cols := range pg.Keys {
			keys[t] = slices.Clone(cols)
		}
		pg.Keys = keys
	}
	pg.HeartbeatInterval = clonePtr(pg.HeartbeatInterval)
	return pg
}

func (k Kafka) redacted() Kafka {
	k.Brokers = slices.Clone(k.Brokers)
	k.Registry.URL = RedactURL(k.Registry.URL)
	k.Registry.Password = mask(k.Registry.Password)
	k.TLS = clonePtr(k.TLS)
	k.SASL = clonePtr(k.SASL)
	if k.SASL != nil {
		k.SASL.Password = mask(k.SASL.Password)
	}
	return k
}

func (s Sink) redacted() Sink {
	s.From = slices.Clone(s.From)
	s.Topics = slices.Clone(s.Topics)
	s.Key = slices.Clone(s.Key)
	s.Map = maps.Clone(s.Map)
	s.With = redactMap(s.With)
	return s
}

// redactMap copies a free-form map, redacting secrets at every depth.
func redactMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = redactValue(k, v)
	}
	return out
}

func redactValue(key string, v any) any {
	if isSecretKey(key) && v != nil && v != "" {
		return Mask
	}
	switch x := v.(type) {
	case string:
		return RedactURL(x)
	case map[string]any:
		return redactMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(key, e)
		}
		return out
	}
	return v
}

func isSecretKey(key string) bool {
	key = strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return Mask
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
