package codec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A small JSON splitter for the decoding hot path: it cuts objects and arrays into their members'
// raw text without decoding them. Every member is validated later, when it is converted to its
// column's form (strconv for numbers, jsonString for strings, json.Compact for json text).

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the string starting at b[i] == '"', and whether it has
// escapes.
func scanString(b []byte, i int) (int, bool, error) {
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc, nil
		}
	}
	return 0, false, fmt.Errorf("unterminated string at offset %d", i)
}

// scanValue returns the index after the value starting at b[i].
func scanValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("missing value at offset %d", i)
	}
	switch b[i] {
	case '"':
		end, _, err := scanString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := scanString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unterminated %c at offset %d", b[i], i)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			if j == i {
				return 0, fmt.Errorf("unexpected %q at offset %d", b[j], j)
			}
			return j, nil
		}
		j++
	}
	return j, nil
}

// splitObject returns the members of a JSON object in document order; nil for null or nothing.
func splitObject(b []byte) ([]jsonField, error) {
	i := skipWS(b, 0)
	if i == len(b) || string(b[i:]) == "null" || string(trimWS(b[i:])) == "null" {
		return nil, nil
	}
	if b[i] != '{' {
		return nil, fmt.Errorf("want an object, got %.20q", b[i:])
	}
	fields := make([]jsonField, 0, 16)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return fields, checkEnd(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, fmt.Errorf("want a member name at offset %d", i)
		}
		end, esc, err := scanString(b, i)
		if err != nil {
			return nil, err
		}
		var name string
		if esc {
			if err := json.Unmarshal(b[i:end], &name); err != nil {
				return nil, fmt.Errorf("member name at offset %d: %w", i, err)
			}
		} else {
			name = string(b[i+1 : end-1])
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, fmt.Errorf("want ':' after member %q", name)
		}
		i = skipWS(b, i+1)
		vend, err := scanValue(b, i)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", name, err)
		}
		fields = append(fields, jsonField{name, b[i:vend:vend]})
		i = skipWS(b, vend)
		if i >= len(b) {
			return nil, fmt.Errorf("unterminated object after member %q", name)
		}
		if b[i] == '}' {
			return fields, checkEnd(b, i+1)
		}
		if b[i] != ',' {
			return nil, fmt.Errorf("want ',' or '}' after member %q, got %q", name, b[i])
		}
		i = skipWS(b, i+1)
	}
}

// splitArray returns the elements of a JSON array.
func splitArray(b []byte) ([]json.RawMessage, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, fmt.Errorf("want an array, got %.20q", b[i:])
	}
	elems := []json.RawMessage{}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return elems, checkEnd(b, i+1)
	}
	for {
		end, err := scanValue(b, i)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", len(elems), err)
		}
		elems = append(elems, b[i:end:end])
		i = skipWS(b, end)
		if i >= len(b) {
			return nil, fmt.Errorf("unterminated array")
		}
		if b[i] == ']' {
			return elems, checkEnd(b, i+1)
		}
		if b[i] != ',' {
			return nil, fmt.Errorf("want ',' or ']' after element %d, got %q", len(elems)-1, b[i])
		}
		i = skipWS(b, i+1)
	}
}

func trimWS(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\r', '\n':
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}

func checkEnd(b []byte, i int) error {
	if i = skipWS(b, i); i != len(b) {
		return fmt.Errorf("unexpected %.20q after the value", b[i:])
	}
	return nil
}

// jsonString decodes a JSON string; strings without escapes are not run through encoding/json.
func jsonString(raw []byte) (string, error) {
	raw = trimWS(raw)
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		plain := true
		for _, c := range raw[1 : len(raw)-1] {
			if c == '\\' || c == '"' || c < 0x20 {
				plain = false
				break
			}
		}
		if plain && utf8.Valid(raw[1:len(raw)-1]) {
			return string(raw[1 : len(raw)-1]), nil
		}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// jsonInt decodes a JSON integer; null or nothing is 0.
func jsonInt(raw []byte) (int64, error) {
	if isNull(raw) {
		return 0, nil
	}
	return strconv.ParseInt(string(raw), 10, 64)
}

// jsonBool decodes a JSON boolean.
func jsonBool(raw []byte) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, got %.20q", raw)
}
