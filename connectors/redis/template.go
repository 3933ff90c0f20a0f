package redis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// keyTemplate is a parsed with.key such as "stock:{sku}:{warehouse}": literal text with
// placeholders naming the sink's key fields.
type keyTemplate struct {
	text  string
	parts []templatePart
}

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
	return t, nil
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
		b.WriteString(s)
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
