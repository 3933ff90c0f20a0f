package config

import (
	"errors"
	"regexp"
	"strings"
)

var dsnKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var errNotDSN = errors.New("neither a URL nor a key=value DSN")

// checkDSN checks the syntax of a libpq key=value connection string such as
// "host=db user=app password='s e c' dbname=wh". Its errors never quote the value.
func checkDSN(s string) error {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return errNotDSN
	}
	for rest != "" {
		var err error
		if rest, err = dsnPair(rest); err != nil {
			return err
		}
		rest = strings.TrimSpace(rest)
	}
	return nil
}

// dsnPair consumes one key=value pair from the start of s and returns the rest.
func dsnPair(s string) (string, error) {
	key, rest, ok := strings.Cut(s, "=")
	if !ok || !dsnKeyRe.MatchString(strings.TrimSpace(key)) {
		return "", errNotDSN
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	if strings.HasPrefix(rest, "'") {
		return quotedDSNValue(rest)
	}
	if end := strings.IndexAny(rest, " \t\r\n"); end >= 0 {
		return rest[end:], nil
	}
	return "", nil
}

// quotedDSNValue consumes a single-quoted value (backslash escapes the next character).
func quotedDSNValue(s string) (string, error) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			return s[i+1:], nil
		}
	}
	return "", errors.New("unterminated quoted value in key=value DSN")
}
