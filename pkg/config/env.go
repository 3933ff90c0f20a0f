package config

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Environment references are replaced by placeholders before the YAML is parsed, because a
// reference such as ${URL} is not a valid plain scalar inside a flow mapping like
// {url: ${URL}}. The placeholders are expanded in string values once the YAML is parsed, so
// each problem can be reported with its YAML path. Each file's placeholders carry a random tag
// after placeholderPrefix, so that text which happens to spell a placeholder stays text.
const placeholderPrefix = "__backflow_env_"

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envRefs holds the text inside each ${...} found in the file, indexed by placeholder number.
type envRefs struct {
	prefix string // placeholderPrefix and this file's tag
	refs   []string
}

// protectEnvRefs replaces every ${...} (ending on the same line) by a placeholder. "$$" is
// left alone; it is unescaped when the value is expanded.
func protectEnvRefs(data []byte) ([]byte, *envRefs) {
	env := &envRefs{prefix: placeholderPrefix + strconv.FormatUint(rand.Uint64(), 36) + "_"}
	var out bytes.Buffer
	for i := 0; i < len(data); i++ {
		if data[i] != '$' || i+1 >= len(data) {
			out.WriteByte(data[i])
			continue
		}
		switch data[i+1] {
		case '$':
			out.WriteString("$$")
			i++
		case '{':
			end := bytes.IndexAny(data[i+2:], "}\n")
			if end < 0 || data[i+2+end] != '}' {
				out.WriteByte('$')
				continue
			}
			fmt.Fprintf(&out, "%s%d__", env.prefix, len(env.refs))
			env.refs = append(env.refs, string(data[i+2:i+2+end]))
			i += 2 + end
		default:
			out.WriteByte('$')
		}
	}
	return out.Bytes(), env
}

// expand replaces placeholders with environment values and "$$" with "$". changed reports
// whether s contained anything to expand. Every unset variable is named in the error.
func (e *envRefs) expand(s string) (out string, changed bool, err error) {
	if !strings.Contains(s, "$") && !strings.Contains(s, e.prefix) {
		return s, false, nil
	}
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); {
		n, val, miss, err := e.next(s[i:])
		if err != nil {
			return "", true, err
		}
		missing = append(missing, miss...)
		b.WriteString(val)
		i += n
	}
	if len(missing) > 0 {
		return "", true, missingVars(missing)
	}
	return b.String(), true, nil
}

// next consumes one token of s: "$$", a placeholder, or one byte. It returns how many bytes it
// consumed, their expansion and the unset variable, if any.
func (e *envRefs) next(s string) (n int, val string, missing []string, err error) {
	switch {
	case strings.HasPrefix(s, "$$"):
		return 2, "$", nil, nil
	case strings.HasPrefix(s, "${"):
		return 0, "", nil, errors.New(`malformed variable reference: "${" without a closing "}" on the same line; write "$$" for a literal "$"`)
	case strings.HasPrefix(s, e.prefix):
		if n, ref, ok := e.placeholder(s); ok {
			val, miss, err := lookupRef(ref)
			return n, val, miss, err
		}
	}
	return 1, s[:1], nil, nil
}

// wholeRef reports whether s, as it stands before expansion, is exactly one ${...} reference.
func (e *envRefs) wholeRef(s string) bool {
	if !strings.HasPrefix(s, e.prefix) {
		return false
	}
	n, _, ok := e.placeholder(s)
	return ok && n == len(s)
}

// placeholder parses a placeholder at the start of s.
func (e *envRefs) placeholder(s string) (n int, ref string, ok bool) {
	rest := s[len(e.prefix):]
	digits, _, found := strings.Cut(rest, "__")
	i, err := strconv.Atoi(digits)
	if !found || err != nil || i < 0 || i >= len(e.refs) {
		return 0, "", false
	}
	return len(e.prefix) + len(digits) + 2, e.refs[i], true
}

// lookupRef resolves "NAME" or "NAME:-default" (a default applies when NAME is unset or empty),
// or "file:PATH": the content of a file, trailing newline removed, for secrets mounted as files
// (Kubernetes and Docker secrets).
func lookupRef(ref string) (val string, missing []string, err error) {
	if path, ok := strings.CutPrefix(ref, "file:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", nil, fmt.Errorf("secret file in ${file:%s}: %w", path, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil, nil
	}
	name, def, hasDefault := strings.Cut(ref, ":-")
	if !envNameRe.MatchString(name) {
		return "", nil, fmt.Errorf("malformed variable reference ${%s}; expected ${NAME} or ${NAME:-default}", ref)
	}
	v, ok := os.LookupEnv(name)
	switch {
	case hasDefault && v == "":
		return def, nil, nil
	case !ok:
		return "", []string{name}, nil
	}
	return v, nil, nil
}

// missingEnvError names the environment variables a value refers to that are not set.
type missingEnvError struct{ names []string }

func (e *missingEnvError) Error() string {
	if len(e.names) == 1 {
		return fmt.Sprintf("environment variable %s is not set; set it or write ${%s:-default}", e.names[0], e.names[0])
	}
	return fmt.Sprintf("environment variables %s are not set; set them or give defaults with ${NAME:-default}", strings.Join(e.names, ", "))
}

func missingVars(names []string) error { return &missingEnvError{names: names} }
