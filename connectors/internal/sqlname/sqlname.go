// Package sqlname splits the qualified table names users write in sink settings.
package sqlname

import (
	"errors"
	"fmt"
	"strings"
)

// Split splits a dotted name such as schema.table into its parts, taken exactly as written (no
// case folding). A part enclosed in quote may hold dots, and a doubled quote inside it stands for
// one: "my.schema"."t" with quote '"', or the same with backticks for MySQL. Errors do not
// repeat s: the caller names it.
func Split(s string, quote byte) ([]string, error) {
	var parts []string
	for rest := s; ; {
		var part string
		if rest != "" && rest[0] == quote {
			var err error
			if part, rest, err = quoted(rest, quote); err != nil {
				return nil, err
			}
		} else {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				i = len(rest)
			}
			part, rest = rest[:i], rest[i:]
		}
		if part == "" {
			return nil, errors.New("empty name part")
		}
		parts = append(parts, part)
		if rest == "" {
			return parts, nil
		}
		rest = rest[1:] // the dot
	}
}

// quoted reads the quoted part at the start of s and returns it unquoted with what follows it.
func quoted(s string, quote byte) (part, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != quote {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == quote {
			b.WriteByte(quote)
			i++
			continue
		}
		rest = s[i+1:]
		if rest != "" && rest[0] != '.' {
			return "", "", fmt.Errorf("unexpected %q after a quoted name", rest)
		}
		return b.String(), rest, nil
	}
	return "", "", fmt.Errorf("unterminated %c quote", quote)
}
