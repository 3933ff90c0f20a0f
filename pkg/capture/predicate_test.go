package capture

import (
	"regexp"
	"strings"
	"testing"
)

var predColumns = []string{"id", "v", "name", "Mixed Case", "créé", "and"}

func TestCheckPredicateAccepts(t *testing.T) {
	for _, where := range []string{
		"id > 500",
		"id = 1",
		"ID <> 2 AND v != 3",
		"v >= -1.5e3 OR v <= +.5",
		"id=-1",
		"name = 'O''Brien'",
		"name LIKE 'a%' AND name NOT ILIKE '%;--%'",
		"name = 'x; DROP TABLE r' OR name = '/* */'",
		`"Mixed Case" IS NOT NULL`,
		`"and" = 1 and créé IS NULL`,
		"v IS NULL OR v IS NOT TRUE",
		"id IN (1, 2, 3) AND v NOT IN ('a', 'b')",
		"id BETWEEN 1 AND 10 AND v NOT BETWEEN (2) AND 3",
		"NOT (id = 1 OR (v = 2 AND NOT name = 'x'))",
		"true",
		"(false)",
		"id = 1\n\tAND v = 2",
		"id",
	} {
		if err := checkPredicate(where, predColumns); err != nil {
			t.Errorf("%q refused: %v", where, err)
		}
	}
}

func TestCheckPredicateRefuses(t *testing.T) {
	for _, tt := range []struct{ where, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"true) OR pg_sleep(1) IS NULL OR (true", "position 5: ')' closes no '('"},
		{"1=1; DROP TABLE x", "position 4: ';'"},
		{"id = 1 -- comment", "position 8: comment"},
		{"id = 1 /* x */", "position 8: comment"},
		{"id IN (SELECT id FROM r)", `position 8: "SELECT" is neither a column`},
		{"side_effect()", "position 1: function call side_effect(…)"},
		{"id = abs (1)", "position 6: function call abs(…)"},
		{"id::text = '1'", "position 3: cast '::'"},
		{"name = $$x$$", "position 8: '$'"},
		{"name = $1", "position 8: '$'"},
		{"name = E'\\x27'", `position 8: "E" directly before a quote`},
		{"name = U&'d\\0061t'", `position 8: "U" is neither`},
		{"id = x'1F'", `position 6: "x" directly before a quote`},
		{"name = 'a\\' OR true OR ''", "position 8: backslash"},
		{"r.id = 1", "position 1: qualified name r…"},
		{"other = 1", `position 1: "other" is neither a column`},
		{`"other" = 1`, `position 1: "other" is not a column`},
		{`"Mixed case" = 1`, `"Mixed case" is not a column`},
		{"mixed case = 1", `"mixed" is neither`},
		{"(id = 1", "position 1: '(' is never closed"},
		{"id = 1)", "position 7: ')' closes no '('"},
		{"name = 'abc", "position 8: ' is never closed"},
		{"id = 1 +", `position 8: "+": not allowed`},
		{"id + 1 = 2", `position 4: "+": not allowed`},
		{"id = 1 - 1", "position 8: \"-\": not allowed"},
		{"id = 1 -1", "position 8: unexpected \"-1\": expected AND, OR"},
		{"id => 1", "position 4: operator starting"},
		{"id == 1", "position 4: operator starting"},
		{"id = 1e", `position 6: number 1 directly followed by "e"`},
		{"id = 0x1F", `position 6: number 0 directly followed by "x"`},
		{"id = 1.2.3", `number 1.2 directly followed by "."`},
		{"id = 1 v = 2", `position 8: unexpected "v": expected AND, OR`},
		{"id =", "position 5: unexpected the end of the condition: expected a column"},
		{"id IS 1", "position 7: unexpected \"1\": expected NULL, TRUE or FALSE"},
		{"id NOT = 1", "position 8: unexpected \"=\": expected IN, BETWEEN"},
		{"id IN ()", `position 8: unexpected ")"`},
		{"id IN 1", `position 7: unexpected "1": expected ( after IN`},
		{"id BETWEEN 1 OR 2", "expected AND of BETWEEN"},
		{"id = 1 AND", "unexpected the end of the condition"},
		{"id = 1 ORDER BY id", `"ORDER" is neither`},
		{"id = 1 UNION SELECT 1", `"UNION" is neither`},
		{"id = ANY ('{1}')", `function call ANY(…)`},
		{"id = 1 AND v @> 2", `"@": not allowed`},
		{"id\u00a0= 1", `"id\u00a0" is neither`},
		{"id = 'x' || 'y'", `"|": not allowed`},
		{"id = \xff", "not valid UTF-8"},
		{strings.Repeat("(", 70) + "true" + strings.Repeat(")", 70), "nested deeper than 64"},
		{strings.Repeat("NOT ", 100) + "true", "too many NOTs"},
	} {
		err := checkPredicate(tt.where, predColumns)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.where, err, tt.want)
		}
	}
}

// quoted matches string literals and quoted names, which may hold anything.
var quoted = regexp.MustCompile(`'(?:[^']|'')*'|"(?:[^"]|"")*"`)

// wordParen matches a word directly before a '(', i.e. what would be a function call.
var wordParen = regexp.MustCompile(`([A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)[ \t\n\r\f\v]*\(`)

// FuzzCheckPredicate: the check never panics, and what it accepts has, outside its literals, no
// statement separator, comment, cast, dollar quote or function call, and balanced parentheses.
func FuzzCheckPredicate(f *testing.F) {
	for _, s := range []string{
		"id > 500", "name = 'O''Brien'", "id IN (1, 2) AND NOT v BETWEEN 1 AND 2", `"Mixed Case" IS NULL`,
		"true) OR pg_sleep(1) IS NULL OR (true", "1=1; DROP TABLE x", "id IN (SELECT 1)", "f(id)",
		"id::text = '1'", "name = E'\\''", "name = $$x$$", "id = 1 -- x", "(((id)))", "id=-.5e-3",
		"name LIKE 'a\\'", "id = 1 /* */", "créé = 'x'", "\"a\"\"b\" = 1",
	} {
		f.Add(s)
	}
	allowedBeforeParen := map[string]bool{"and": true, "or": true, "not": true, "in": true, "between": true, "like": true, "ilike": true}
	f.Fuzz(func(t *testing.T, where string) {
		if checkPredicate(where, predColumns) != nil {
			return
		}
		bare := quoted.ReplaceAllString(where, "''")
		for _, bad := range []string{";", "--", "/*", "*/", "::", "$", "\\"} {
			if strings.Contains(bare, bad) {
				t.Fatalf("accepted %q, which holds %q outside literals", where, bad)
			}
		}
		for _, m := range wordParen.FindAllStringSubmatch(bare, -1) {
			if !allowedBeforeParen[strings.ToLower(m[1])] {
				t.Fatalf("accepted %q, which has %q directly before '('", where, m[1])
			}
		}
		depth := 0
		for _, r := range bare {
			switch r {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth < 0 {
				t.Fatalf("accepted %q, whose parentheses close more than they open", where)
			}
		}
		if depth != 0 {
			t.Fatalf("accepted %q, whose parentheses are not balanced", where)
		}
	})
}
