package model

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
)

// result is the shape of a model's result and the query that reads it in key order.
type result struct {
	table *change.Table
	keys  []int  // indexes of the key columns in table.Columns, in the model's key order
	enc   keyEnc // how state keys encode them
	sql   string // every column as text, in key order unless the state is hash-ordered
	shape string // names and types of the columns, hashed into every row
}

// describe asks PostgreSQL for the columns of the model's query without running it, and builds
// the change.Table of the model (schema "model", the model's name) with capture's type mapping.
func describe(ctx context.Context, conn *pgx.Conn, types *capture.TypeMapper, m config.Model) (*result, error) {
	inner := "SELECT * FROM (" + trimQuery(m.Query()) + "\n) AS q"
	sd, err := conn.Prepare(ctx, "", inner)
	if err != nil {
		return nil, queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	t := &change.Table{Schema: config.ModelSchema, Name: m.Name}
	seen := map[string]bool{}
	var shape strings.Builder
	for _, f := range sd.Fields {
		if seen[f.Name] {
			return nil, queryError{fmt.Errorf("model %s: the result has two columns named %q: give them distinct names (AS …)", m.Name, f.Name)}
		}
		seen[f.Name] = true
		col, err := types.Column(ctx, f.Name, f.DataTypeOID, slices.Contains(m.Key, f.Name))
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Name, err)
		}
		t.Columns = append(t.Columns, col)
		fmt.Fprintf(&shape, "%s\x00%d\x00", f.Name, f.DataTypeOID)
	}
	r := &result{table: t, shape: shape.String()}
	var cols, order []string
	for _, c := range t.Columns {
		cols = append(cols, capture.TextExpr("q."+pgx.Identifier{c.Name}.Sanitize(), c))
	}
	for _, k := range m.Key {
		i := slices.IndexFunc(t.Columns, func(c change.Column) bool { return c.Name == k })
		if i < 0 {
			return nil, queryError{fmt.Errorf("model %s: key column %q is not in the result (columns: %s)", m.Name, k, columnNames(t))}
		}
		r.keys = append(r.keys, i)
	}
	r.enc = keyEncOf(t, r.keys)
	for n, i := range r.keys {
		if r.enc[n] == 'i' {
			order = append(order, "q."+pgx.Identifier{t.Columns[i].Name}.Sanitize())
		} else {
			order = append(order, "("+cols[i]+`) COLLATE "C"`)
		}
	}
	r.sql = fmt.Sprintf("SELECT %s FROM (%s\n) AS q", strings.Join(cols, ", "), trimQuery(m.Query()))
	if !stateHashed(r.enc) { // a hash-ordered state takes the rows in any order (see bucket.go)
		r.sql += " ORDER BY " + strings.Join(order, ", ")
	}
	return r, nil
}

// trimQuery drops the blanks and the semicolon a query may end with: it is used as a subquery.
func trimQuery(q string) string {
	return strings.TrimRight(strings.TrimSpace(q), "; \t\n")
}

func columnNames(t *change.Table) string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// rowKey builds the state key of a result row (see keyEnc). A NULL key column is refused.
func (r *result) rowKey(dst []byte, raw [][]byte, model string) ([]byte, error) {
	dst = dst[:0]
	for n, i := range r.keys {
		if raw[i] == nil {
			return nil, keyError{fmt.Errorf("model %s: key column %q is NULL in a result row (other key columns: %s): every row needs a key",
				model, r.table.Columns[i].Name, r.keyText(raw))}
		}
		var err error
		if dst, err = r.enc.appendPart(dst, n, raw[i]); err != nil {
			return nil, fmt.Errorf("model %s: key column %q: %w", model, r.table.Columns[i].Name, err)
		}
	}
	return dst, nil
}

// keyText shows a row's key for errors: col=value, ….
func (r *result) keyText(raw [][]byte) string {
	var parts []string
	for _, i := range r.keys {
		v := "NULL"
		if raw[i] != nil {
			v = strconv.Quote(string(raw[i]))
		}
		parts = append(parts, r.table.Columns[i].Name+"="+v)
	}
	return strings.Join(parts, ", ")
}

// stateKeyText shows a state key for errors.
func (r *result) stateKeyText(key []byte) string {
	parts, err := r.enc.parts(key)
	if err != nil {
		return strconv.Quote(string(key))
	}
	raw := make([][]byte, len(r.table.Columns))
	for n, i := range r.keys {
		raw[i] = parts[n]
	}
	return r.keyText(raw)
}

// rowHash hashes the result's shape and every column's text, NULLs distinct from any text.
func (r *result) rowHash(d *xxhash.Digest, raw [][]byte) uint64 {
	d.Reset()
	_, _ = d.WriteString(r.shape)
	var buf [binary.MaxVarintLen64]byte
	for _, v := range raw {
		if v == nil {
			_, _ = d.Write([]byte{0})
			continue
		}
		n := binary.PutUvarint(buf[:], uint64(len(v))+1)
		_, _ = d.Write(buf[:n])
		_, _ = d.Write(v)
	}
	return d.Sum64()
}

// decodeRow converts a row's text to its change form.
func (r *result) decodeRow(dec *capture.TextDecoder, raw [][]byte) (change.Row, error) {
	row := make(change.Row, len(raw))
	for i, c := range r.table.Columns {
		if raw[i] == nil {
			row[c.Name] = nil
			continue
		}
		v, err := dec.Decode(c, raw[i])
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		row[c.Name] = v
	}
	return row, nil
}

// decodeKey converts a state key back to the key columns' values, for the before image of a
// delete.
func (r *result) decodeKey(dec *capture.TextDecoder, key []byte) (change.Row, error) {
	parts, err := r.enc.parts(key)
	if err != nil {
		return nil, fmt.Errorf("stored key: %w", err)
	}
	row := change.Row{}
	for n, i := range r.keys {
		c := r.table.Columns[i]
		v, err := dec.Decode(c, parts[n])
		if err != nil {
			return nil, fmt.Errorf("stored key column %s: %w", c.Name, err)
		}
		row[c.Name] = v
	}
	return row, nil
}

// queryError is a failure of the model's query itself (syntax, a missing table, a runtime
// error, a key column not in the result): the model's SQL or the warehouse needs a change.
type queryError struct{ error }

func (e queryError) Unwrap() error { return e.error }

// keyError is a result refused for its keys: a duplicate or NULL key.
type keyError struct{ error }

func (e keyError) Unwrap() error { return e.error }

// IsQueryError reports whether err is a failure of the model's query or result (not of Kafka
// or the state).
func IsQueryError(err error) bool {
	var q queryError
	var k keyError
	return errors.As(err, &q) || errors.As(err, &k)
}
