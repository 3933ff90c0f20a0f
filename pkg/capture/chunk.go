package capture

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/change"
)

// querier is a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// chunkReader reads a table in key order, one chunk at a time, decoding every column from the
// same text pgoutput sends. Both the initial snapshot and re-snapshots use it.
type chunkReader struct {
	t           *change.Table
	dec         *decoder
	first, next string
}

// newChunkReader builds keyset-paginated queries: the next chunk starts strictly after the last
// key read. Columns are qualified: a bare name in ORDER BY would sort by the text output column
// of the same name. where, when set, is an extra SQL condition (re-snapshots of part of a table).
func newChunkReader(ctx context.Context, cat *catalog, t *change.Table, size int, where string) (*chunkReader, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		q := "src." + quoteIdent(c.Name)
		if c.PGType == "bpchar" { // bpchar::text trims padding; its output function keeps it
			cols[i] = fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE concat(%s) END", q, q)
		} else {
			cols[i] = q + "::text"
		}
	}
	var keys, params []string
	for i, k := range t.KeyColumns() {
		var typ string
		if err := cat.conn.QueryRow(ctx, "SELECT format_type($1::int8::oid, NULL)", int64(k.TypeOID)).Scan(&typ); err != nil {
			return nil, fmt.Errorf("type of key column %s: %w", k.Name, err)
		}
		keys = append(keys, "src."+quoteIdent(k.Name))
		params = append(params, fmt.Sprintf("$%d::text::%s", i+1, typ))
	}
	base := fmt.Sprintf("SELECT %s FROM %s AS src", strings.Join(cols, ", "), quoteTable(t.Schema, t.Name))
	order := fmt.Sprintf(" ORDER BY %s LIMIT %d", strings.Join(keys, ", "), size)
	cond := "true"
	if where != "" {
		cond = "(" + where + ")"
	}
	return &chunkReader{
		t: t, dec: newDecoder(),
		first: fmt.Sprintf("%s WHERE %s%s", base, cond, order),
		next:  fmt.Sprintf("%s WHERE %s AND (%s) > (%s)%s", base, cond, strings.Join(keys, ", "), strings.Join(params, ", "), order),
	}, nil
}

// read returns the chunk after lastKey (from the start when nil) and the text of its last key.
func (r *chunkReader) read(ctx context.Context, db querier, lastKey []string) ([]change.Row, []string, error) {
	query, args := r.first, []any(nil)
	if lastKey != nil {
		query = r.next
		for _, k := range lastKey {
			args = append(args, k)
		}
	}
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []change.Row
	var last []string
	for rows.Next() {
		row, key, err := r.decodeRow(rows.RawValues())
		if err != nil {
			return nil, nil, err
		}
		out, last = append(out, row), key
	}
	return out, last, rows.Err()
}

func (r *chunkReader) decodeRow(raw [][]byte) (change.Row, []string, error) {
	row := make(change.Row, len(r.t.Columns))
	var key []string
	for i, c := range r.t.Columns {
		if raw[i] == nil {
			row[c.Name] = nil
			continue
		}
		if c.Key {
			key = append(key, string(raw[i]))
		}
		v, err := r.dec.decode(c, raw[i])
		if err != nil {
			return nil, nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		row[c.Name] = v
	}
	return row, key, nil
}
