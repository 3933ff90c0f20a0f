package capture

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// A re-snapshot's `where` is pasted into the chunk queries as SQL, and anyone who can insert into
// the signal table can set it. checkPredicate lets through only a plain boolean condition over the
// table's own columns, built from literals, comparisons and AND/OR/NOT: no function calls, casts,
// subqueries, statements or comments, so the condition can read no other data and cause no side
// effects. It is a whitelist over a tokenizer, followed by a small parser that checks the shape.

// maxPredicateDepth bounds nested parentheses (and NOTs), so a hostile condition cannot exhaust
// the parser's stack.
const maxPredicateDepth = 64

type tokKind int

const (
	tokColumn  tokKind = iota // a column of the table, plain or double-quoted
	tokKeyword                // AND, OR, NOT, IS, NULL, TRUE, FALSE, IN, BETWEEN, LIKE, ILIKE
	tokNumber                 // numeric literal, with its sign when it has one
	tokString                 // single-quoted string literal
	tokCompare                // = <> != < <= > >=
	tokLParen
	tokRParen
	tokComma
	tokEOF
)

type token struct {
	kind tokKind
	text string // keywords upper-cased; everything else as written
	pos  int    // byte offset in the condition
}

// predicateKeywords are the only unquoted words that are not column names.
var predicateKeywords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "IS": true, "NULL": true, "TRUE": true, "FALSE": true,
	"IN": true, "BETWEEN": true, "LIKE": true, "ILIKE": true,
}

// checkPredicate returns nil when where is a plain predicate over columns (the table's column
// names, exactly as in the catalog), or an error naming the first token refused and its position
// (1-based, in characters).
func checkPredicate(where string, columns []string) error {
	if strings.TrimSpace(where) == "" {
		return errors.New("the condition is empty")
	}
	if !utf8.ValidString(where) {
		return errors.New("the condition is not valid UTF-8")
	}
	toks, err := tokenize(where, columns)
	if err != nil {
		return err
	}
	p := &predParser{src: where, toks: toks}
	if err := p.expr(0); err != nil {
		return err
	}
	if t := p.peek(); t.kind != tokEOF {
		return p.errAt(t, "expected AND, OR or the end of the condition")
	}
	return nil
}

// position turns a byte offset into a 1-based character position.
func position(src string, off int) int {
	return utf8.RuneCountInString(src[:off]) + 1
}

func tokenize(src string, columns []string) ([]token, error) {
	cols := make(map[string]bool, len(columns))
	for _, c := range columns {
		cols[c] = true
	}
	refuse := func(off int, format string, args ...any) error {
		return fmt.Errorf("position %d: %s", position(src, off), fmt.Sprintf(format, args...))
	}
	var toks []token
	var open []int // offsets of the parentheses not closed yet
	for i := 0; i < len(src); {
		r, _ := utf8.DecodeRuneInString(src[i:])
		switch {
		case isSpace(src[i]):
			i++
		case r == '\'':
			end, err := scanQuoted(src, i, '\'')
			if err != nil {
				return nil, refuse(i, "%v", err)
			}
			if strings.ContainsRune(src[i:end], '\\') {
				// With standard_conforming_strings off a backslash escapes the quote: the
				// literal would end elsewhere for PostgreSQL than it does here.
				return nil, refuse(i, "backslash in string literal %s: not allowed", src[i:end])
			}
			toks = append(toks, token{tokString, src[i:end], i})
			i = end
		case r == '"':
			end, err := scanQuoted(src, i, '"')
			if err != nil {
				return nil, refuse(i, "%v", err)
			}
			name := strings.ReplaceAll(src[i+1:end-1], `""`, `"`)
			if !cols[name] {
				return nil, refuse(i, "%s is not a column of the table", src[i:end])
			}
			toks = append(toks, token{tokColumn, src[i:end], i})
			i = end
		case isIdentStart(src[i]):
			end := i + 1
			for end < len(src) && (isIdentStart(src[end]) || isDigit(src[end])) {
				end++
			}
			word := src[i:end]
			if end < len(src) {
				switch src[end] {
				case '\'', '"': // E'…', B'…', X'…', U&"…", typed literals: escapes and casts
					return nil, refuse(i, "%q directly before a quote (prefixed or typed literal): not allowed", word)
				case '$':
					return nil, refuse(end, "'$' (dollar quotes and parameters): not allowed")
				case '.':
					return nil, refuse(i, "qualified name %s…: only the table's own columns, unqualified", word)
				}
			}
			if up := strings.ToUpper(word); predicateKeywords[up] {
				toks = append(toks, token{tokKeyword, up, i})
			} else if cols[foldIdent(word)] {
				toks = append(toks, token{tokColumn, word, i})
			} else {
				after := strings.TrimLeftFunc(src[end:], func(r rune) bool { return r < utf8.RuneSelf && isSpace(byte(r)) })
				if strings.HasPrefix(after, "(") {
					return nil, refuse(i, "function call %s(…): not allowed", word)
				}
				return nil, refuse(i, "%q is neither a column of the table nor an allowed keyword", word)
			}
			i = end
		case isDigit(src[i]) || startsNumber(src[i:]) ||
			(r == '-' || r == '+') && (i+1 < len(src) && isDigit(src[i+1]) || startsNumber(src[i+1:])):
			start := i
			if r == '-' || r == '+' {
				i++
			}
			end := scanNumber(src, i)
			if end < len(src) && (isIdentStart(src[end]) || src[end] == '.') {
				return nil, refuse(start, "number %s directly followed by %q: not allowed", src[start:end], src[end:end+1])
			}
			toks = append(toks, token{tokNumber, src[start:end], start})
			i = end
		case r == '-' && strings.HasPrefix(src[i:], "--"), r == '/' && strings.HasPrefix(src[i:], "/*"):
			return nil, refuse(i, "comment %q: not allowed", src[i:i+2])
		case r == ':' && strings.HasPrefix(src[i:], "::"):
			return nil, refuse(i, "cast '::': not allowed")
		case r == ';':
			return nil, refuse(i, "';': only one condition, not statements")
		case r == '$':
			return nil, refuse(i, "'$' (dollar quotes and parameters): not allowed")
		case r == '=' || r == '<' || r == '>' || r == '!':
			op := compareOp(src[i:])
			if op == "" {
				return nil, refuse(i, "operator starting %q: only = <> != < <= > >=", string(r))
			}
			toks = append(toks, token{tokCompare, op, i})
			i += len(op)
		case r == '(':
			if len(open) >= maxPredicateDepth {
				return nil, refuse(i, "parentheses nested deeper than %d", maxPredicateDepth)
			}
			open = append(open, i)
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case r == ')':
			if len(open) == 0 {
				return nil, refuse(i, "')' closes no '('")
			}
			open = open[:len(open)-1]
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case r == ',':
			toks = append(toks, token{tokComma, ",", i})
			i++
		default:
			return nil, refuse(i, "%q: not allowed in a condition", string(r))
		}
	}
	if len(open) > 0 {
		return nil, refuse(open[len(open)-1], "'(' is never closed")
	}
	return append(toks, token{tokEOF, "", len(src)}), nil
}

// scanQuoted returns the offset after the literal or quoted name starting at src[start], whose
// quote character is doubled inside it.
func scanQuoted(src string, start int, quote byte) (int, error) {
	for i := start + 1; i < len(src); i++ {
		if src[i] != quote {
			continue
		}
		if i+1 < len(src) && src[i+1] == quote {
			i++
			continue
		}
		return i + 1, nil
	}
	return 0, fmt.Errorf("%c is never closed", quote)
}

// scanNumber returns the end of the digits[.digits][e[±]digits] at src[i:]. What follows a number
// must not be a letter: PostgreSQL 15 reads 1abc as 1 AS abc, and 0x1F is hex from 16 on.
func scanNumber(src string, i int) int {
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	if i < len(src) && src[i] == '.' {
		i++
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		j := i + 1
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j < len(src) && isDigit(src[j]) {
			for i = j; i < len(src) && isDigit(src[i]); i++ {
			}
		}
	}
	return i
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// startsNumber reports whether s starts with a number written without its leading zero (".5").
func startsNumber(s string) bool { return len(s) > 1 && s[0] == '.' && isDigit(s[1]) }

// isSpace is PostgreSQL's whitespace: other characters, even Unicode spaces, are not.
func isSpace(b byte) bool { return strings.IndexByte(" \t\n\r\f\v", b) >= 0 }

// isIdentStart is PostgreSQL's rule: ASCII letters, '_' and any byte of a multi-byte character.
// Treating those bytes alike is what keeps this tokenizer and PostgreSQL's on the same tokens.
func isIdentStart(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b >= utf8.RuneSelf
}

// compareOp returns the comparison operator at the start of s, or "". PostgreSQL reads a run of
// operator characters as one operator, so "=<" or "<>=" must not pass as two.
func compareOp(s string) string {
	end := 0
	for end < len(s) && strings.IndexByte("+-*/<>=~!@#%^&|`?", s[end]) >= 0 {
		end++
	}
	run := s[:end]
	// A trailing sign belongs to the number after it when the rest has no ~!@#%^&|`?: PostgreSQL's
	// rule for multi-character operators.
	for len(run) > 1 && (run[len(run)-1] == '-' || run[len(run)-1] == '+') && !strings.ContainsAny(run[:len(run)-1], "~!@#%^&|`?") {
		run = run[:len(run)-1]
	}
	switch run {
	case "=", "<>", "!=", "<", "<=", ">", ">=":
		return run
	}
	return ""
}

// foldIdent lower-cases an unquoted identifier the way PostgreSQL does (ASCII letters only).
func foldIdent(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// predParser checks the token stream against this grammar (precedence does not change what is
// allowed, so AND and OR share one rule):
//
//	expr    = not { (AND|OR) not }
//	not     = NOT not | test
//	test    = operand [ cmp operand | IS [NOT] (NULL|TRUE|FALSE)
//	          | [NOT] IN ( operand {, operand} ) | [NOT] BETWEEN operand AND operand
//	          | [NOT] (LIKE|ILIKE) operand ]
//	operand = column | number | string | NULL | TRUE | FALSE | ( expr )
type predParser struct {
	src  string
	toks []token
	i    int
}

func (p *predParser) peek() token { return p.toks[p.i] }

func (p *predParser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *predParser) keyword(words ...string) bool {
	t := p.peek()
	if t.kind != tokKeyword {
		return false
	}
	for _, w := range words {
		if t.text == w {
			p.i++
			return true
		}
	}
	return false
}

func (p *predParser) errAt(t token, want string) error {
	what := fmt.Sprintf("%q", t.text)
	if t.kind == tokEOF {
		what = "the end of the condition"
	}
	return fmt.Errorf("position %d: unexpected %s: %s", position(p.src, t.pos), what, want)
}

func (p *predParser) expr(depth int) error {
	if depth > maxPredicateDepth {
		return p.errAt(p.peek(), fmt.Sprintf("nested deeper than %d", maxPredicateDepth))
	}
	for {
		if err := p.not(depth); err != nil {
			return err
		}
		if !p.keyword("AND", "OR") {
			return nil
		}
	}
}

func (p *predParser) not(depth int) error {
	for n := 0; p.keyword("NOT"); n++ {
		if n > maxPredicateDepth {
			return p.errAt(p.peek(), "too many NOTs")
		}
	}
	return p.test(depth)
}

func (p *predParser) test(depth int) error {
	if err := p.operand(depth); err != nil {
		return err
	}
	if p.peek().kind == tokCompare {
		p.next()
		return p.operand(depth)
	}
	if p.keyword("IS") {
		p.keyword("NOT")
		if !p.keyword("NULL", "TRUE", "FALSE") {
			return p.errAt(p.peek(), "expected NULL, TRUE or FALSE after IS [NOT]")
		}
		return nil
	}
	negated := p.keyword("NOT")
	switch {
	case p.keyword("IN"):
		return p.inList(depth)
	case p.keyword("BETWEEN"):
		if err := p.operand(depth); err != nil {
			return err
		}
		if !p.keyword("AND") {
			return p.errAt(p.peek(), "expected AND of BETWEEN")
		}
		return p.operand(depth)
	case p.keyword("LIKE", "ILIKE"):
		return p.operand(depth)
	case negated:
		return p.errAt(p.peek(), "expected IN, BETWEEN, LIKE or ILIKE after NOT")
	}
	return nil
}

func (p *predParser) inList(depth int) error {
	if t := p.next(); t.kind != tokLParen {
		return p.errAt(t, "expected ( after IN")
	}
	for {
		if err := p.operand(depth); err != nil {
			return err
		}
		switch t := p.next(); t.kind {
		case tokComma:
		case tokRParen:
			return nil
		default:
			return p.errAt(t, "expected , or ) in the IN list")
		}
	}
}

func (p *predParser) operand(depth int) error {
	t := p.next()
	switch {
	case t.kind == tokColumn, t.kind == tokNumber, t.kind == tokString:
		return nil
	case t.kind == tokKeyword && (t.text == "NULL" || t.text == "TRUE" || t.text == "FALSE"):
		return nil
	case t.kind == tokLParen:
		if err := p.expr(depth + 1); err != nil {
			return err
		}
		if c := p.next(); c.kind != tokRParen {
			return p.errAt(c, "expected )")
		}
		return nil
	}
	return p.errAt(t, "expected a column, a literal or (")
}
