package redis

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyTemplate is a parsed with.key such as "stock:{sku}:{warehouse}": literal text with
// placeholders naming the sink's key fields.
//
// Values are escaped so that keys stay unambiguous: in a rendered value, '%' and every separator
// (':' and each ASCII character of the template's literals that is not a letter or digit)
// become %XX, the byte in upper-case hex, as in URLs. Without it the rows (sku "a:b", warehouse
// "c") and (sku "a", warehouse "b:c") would both write stock:a:b:c, and a truncate of
// "stock:{sku}" would take the keys of "stock:{sku}:{warehouse}" too. With it a key can be read
// back into its values (owns), which is how a truncate tells its own keys from others sharing
// the prefix.
type keyTemplate struct {
	text  string
	parts []templatePart
	seps  string // the separators: bytes a value never holds unescaped
}

// escapeChar starts an escape in a value; templates may not use it in their literals.
const escapeChar = '%'

// templatePart is a literal run of text or, when field is set, a placeholder.
type templatePart struct {
	literal string
	field   string
}

// parseKeyTemplate splits s into literals and {field} placeholders.
func parseKeyTemplate(s string) (*keyTemplate, error) {
	t := &keyTemplate{text: s}
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, templatePart{literal: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("%q has a '}' without a matching '{'", s)
		}
		if open > 0 {
			t.parts = append(t.parts, templatePart{literal: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("%q has a '{' without a matching '}'", s)
		}
		name := strings.TrimSpace(rest[open+1 : open+1+end])
		if name == "" {
			return nil, fmt.Errorf("%q has an empty placeholder {}", s)
		}
		t.parts = append(t.parts, templatePart{field: name})
		rest = rest[open+2+end:]
	}
	seps := []byte{':'}
	for i, p := range t.parts {
		if strings.IndexByte(p.literal, escapeChar) >= 0 {
			return nil, fmt.Errorf("%q: '%%' is reserved for escaping values; use another character", s)
		}
		for _, c := range []byte(p.literal) {
			if isSeparator(c) && bytes.IndexByte(seps, c) < 0 {
				seps = append(seps, c)
			}
		}
		if i > 0 && p.field != "" && t.parts[i-1].field != "" {
			return nil, fmt.Errorf("%q: placeholders {%s} and {%s} need a separator between them (such as ':'), or keys would be ambiguous",
				s, t.parts[i-1].field, p.field)
		}
	}
	t.seps = string(seps)
	for i := 1; i+1 < len(t.parts); i++ {
		if p := t.parts[i]; p.field == "" && !strings.ContainsAny(p.literal, t.seps) {
			return nil, fmt.Errorf("%q: %q between placeholders has no separator (a character other than a letter or digit), so keys would be ambiguous",
				s, p.literal)
		}
	}
	return t, nil
}

// isSeparator reports whether c, in a template's literal, separates values: ASCII, not a letter
// or digit.
func isSeparator(c byte) bool {
	return c < utf8.RuneSelf && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
}

// escape returns v with '%' and the template's separators as %XX.
func (t *keyTemplate) escape(v string) string {
	if !strings.ContainsAny(v, t.seps) && strings.IndexByte(v, escapeChar) < 0 {
		return v
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == escapeChar || strings.IndexByte(t.seps, c) >= 0 {
			b.Write([]byte{escapeChar, hex[c>>4], hex[c&15]})
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// owns reports whether key is one render can produce: the literals in their places and, between
// them, values holding no separator and only well-formed escapes.
func (t *keyTemplate) owns(key string) bool {
	rest := key
	for i, p := range t.parts {
		if p.field == "" {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, p.literal); !ok {
				return false
			}
			continue
		}
		end := len(rest)
		if i+1 < len(t.parts) {
			// The value ends where the next literal starts: found by the literal's first
			// separator, which no value holds (a trailing literal without one ends the key).
			lit := t.parts[i+1].literal
			if k := strings.IndexAny(lit, t.seps); k >= 0 {
				end = strings.IndexByte(rest, lit[k]) - k
			} else {
				end = len(rest) - len(lit)
			}
			if end < 0 {
				return false
			}
		}
		if !t.wellEscaped(rest[:end]) {
			return false
		}
		rest = rest[end:]
	}
	return rest == ""
}

// wellEscaped reports whether v could be an escaped value: no separator, and every '%' followed
// by the upper-case hex of a byte that escape escapes.
func (t *keyTemplate) wellEscaped(v string) bool {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case strings.IndexByte(t.seps, c) >= 0:
			return false
		case c == escapeChar:
			if i+3 > len(v) {
				return false
			}
			n, err := strconv.ParseUint(v[i+1:i+3], 16, 8)
			if err != nil || v[i+1:i+3] != strings.ToUpper(v[i+1:i+3]) ||
				(byte(n) != escapeChar && strings.IndexByte(t.seps, byte(n)) < 0) {
				return false
			}
			i += 2
		}
	}
	return true
}

// fields returns the placeholder names in template order.
func (t *keyTemplate) fields() []string {
	var names []string
	for _, p := range t.parts {
		if p.field != "" {
			names = append(names, p.field)
		}
	}
	return names
}

// check requires every placeholder to be a key field of the sink and every key field to appear,
// so that distinct rows never share a Redis key.
func (t *keyTemplate) check(keyFields []string) error {
	if len(keyFields) == 0 {
		return errors.New("the sink has no key fields; set the sink's `key` and use them as {placeholders}")
	}
	used := t.fields()
	if len(used) == 0 {
		return fmt.Errorf("%q has no placeholder; expected the key fields %s, e.g. {%s}", t.text, strings.Join(keyFields, ", "), keyFields[0])
	}
	for _, name := range used {
		if !slices.Contains(keyFields, name) {
			return fmt.Errorf("placeholder {%s} is not one of the sink's key fields (%s)", name, strings.Join(keyFields, ", "))
		}
	}
	for _, name := range keyFields {
		if !slices.Contains(used, name) {
			return fmt.Errorf("key field %s has no {%s} placeholder in %q; distinct rows would share one Redis key", name, name, t.text)
		}
	}
	return nil
}

// render builds the Redis key of a record from its key values.
func (t *keyTemplate) render(key map[string]any) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == "" {
			b.WriteString(p.literal)
			continue
		}
		v, ok := key[p.field]
		if !ok || v == nil {
			return "", fmt.Errorf("key field %s is missing or null", p.field)
		}
		s, err := formatValue(v)
		if err != nil {
			return "", fmt.Errorf("key field %s: %w", p.field, err)
		}
		b.WriteString(t.escape(s))
	}
	return b.String(), nil
}

// prefix is the literal text before the first placeholder.
func (t *keyTemplate) prefix() string {
	if len(t.parts) == 0 || t.parts[0].field != "" {
		return ""
	}
	return t.parts[0].literal
}

// pattern is a SCAN MATCH glob that matches every key the template can render: literals escaped,
// placeholders as '*'.
func (t *keyTemplate) pattern() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.field != "" {
			b.WriteByte('*')
			continue
		}
		for _, r := range p.literal {
			if strings.ContainsRune(`*?[]\`, r) {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
