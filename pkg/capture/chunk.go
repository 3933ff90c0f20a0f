package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/change"
)

// querier is a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// tableValue scans into dest the one value sql (with the table as $1) returns about table t,
// leaving dest alone when it returns no row; what names the value in the error.
func tableValue(ctx context.Context, db querier, t *change.Table, what, sql string, dest any) error {
	rows, err := db.Query(ctx, sql, quoteTable(t.Schema, t.Name))
	if err == nil {
		if rows.Next() {
			err = rows.Scan(dest)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("%s of %s: %w", what, t.QualifiedName(), err)
	}
	return nil
}

// chunkReader reads a table in key order, one chunk at a time, decoding every column from the
// same text pgoutput sends: each type's output function, asked for by the text result format
// (not a cast to text, which differs for some types: bool, inet, bpchar's padding; and costs the
// server about as much again as the read itself), except the columns a snapshot chunk reads in
// binary (binvalues.go). The initial snapshot and re-snapshots use it.
type chunkReader struct {
	t    *change.Table
	dec  *decoder
	size int
	// base selects every column (in formats, or textResults); cond is the extra
	// condition (true when none); keys lists the key columns and keyTypes the SQL types their
	// text values are cast to.
	base, cond, keys string
	keyTypes         []string
	// formats are the result formats of a snapshot chunk (eachRaw, eachPages), which read the
	// columns binary marks in binary (binvalues.go); other reads get text.
	formats pgx.QueryResultFormats
	binary  []bool
}

// textResults asks for every result column in text format (one code applies to all columns).
var textResults = pgx.QueryResultFormats{pgx.TextFormatCode}

// keyBounds limit a chunk read on the key tuple, compared as a whole (row comparison, which
// orders like ORDER BY over the key columns): after is exclusive, from inclusive, below
// exclusive; a nil bound is open.
type keyBounds struct {
	after, from, below []string
}

// newChunkReader builds keyset-paginated queries: the next chunk starts strictly after the last
// key read. Columns are qualified: a bare name in ORDER BY would sort by the text output column
// of the same name. where, when set, is an extra SQL condition (re-snapshots of part of a table);
// the publication's row filter for the table, when it has one, is another.
func newChunkReader(ctx context.Context, cat *catalog, t *change.Table, size int, where string) (*chunkReader, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = "src." + quoteIdent(c.Name)
	}
	var keys, types []string
	for _, k := range t.KeyColumns() {
		var typ string
		if err := cat.conn.QueryRow(ctx, "SELECT format_type($1::int8::oid, NULL)", int64(k.TypeOID)).Scan(&typ); err != nil {
			return nil, fmt.Errorf("type of key column %s: %w", k.Name, err)
		}
		keys = append(keys, "src."+quoteIdent(k.Name))
		types = append(types, typ)
	}
	// The publication's row filter: the stream has the changes of those rows only (an UPDATE
	// that takes a row out of it arrives as a DELETE), so the targets must hold those only. Its
	// SQL comes from the catalog, not from data: pg_get_expr of the condition the publication's
	// owner set, in which PostgreSQL allows no user-defined function and no subquery.
	f, err := cat.publicationFilter(ctx, t.Schema, t.Name)
	if err != nil {
		return nil, err
	}
	var conds []string
	for _, c := range []string{where, f.Rows} {
		if c != "" {
			conds = append(conds, "("+c+")")
		}
	}
	cond := "true"
	if len(conds) > 0 {
		cond = strings.Join(conds, " AND ")
	}
	formats, binary := snapshotFormats(t.Columns)
	return &chunkReader{
		t: t, dec: newDecoder(), size: size, formats: formats, binary: binary,
		base:     fmt.Sprintf("SELECT %s FROM %s AS src", strings.Join(cols, ", "), quoteTable(t.Schema, t.Name)),
		cond:     cond,
		keys:     strings.Join(keys, ", "),
		keyTypes: types,
	}, nil
}

// query returns the SQL and arguments of the chunk within b.
func (r *chunkReader) query(b keyBounds) (string, []any) {
	var sql strings.Builder
	sql.WriteString(r.base + " WHERE " + r.cond)
	var args []any
	bound := func(op string, key []string) {
		if key == nil {
			return
		}
		params := make([]string, len(key))
		for i, k := range key {
			args = append(args, k)
			params[i] = fmt.Sprintf("$%d::text::%s", len(args), r.keyTypes[i])
		}
		fmt.Fprintf(&sql, " AND (%s) %s (%s)", r.keys, op, strings.Join(params, ", "))
	}
	bound(">", b.after)
	bound(">=", b.from)
	bound("<", b.below)
	fmt.Fprintf(&sql, " ORDER BY %s LIMIT %d", r.keys, r.size)
	return sql.String(), args
}

// badRow is a row a chunk read could not decode: its key columns decoded (nil when they do not
// decode either), the row as PostgreSQL wrote it (rawJSON) and the error.
type badRow struct {
	key change.Row
	raw []byte
	err error
}

// read returns the chunk after lastKey (from the start when nil): its rows, those that did not
// decode, the text of its last key and the size of its rows' text.
func (r *chunkReader) read(ctx context.Context, db querier, lastKey []string) chunkResult {
	var res chunkResult
	textBytes := func(raw [][]byte) {
		for _, b := range raw {
			res.bytes += int64(len(b))
		}
	}
	_, res.last, res.err = r.each(ctx, db, keyBounds{after: lastKey}, func(raw [][]byte, err error) error {
		textBytes(raw)
		res.bad = append(res.bad, badRow{key: r.decodeKey(raw), raw: r.rawJSON(raw, nil), err: err})
		return nil
	}, func(vals []any, raw [][]byte) error {
		textBytes(raw)
		row := make(change.Row, len(vals))
		for i, c := range r.t.Columns {
			row[c.Name] = vals[i]
		}
		res.rows = append(res.rows, row)
		return nil
	})
	return res
}

// decodeKey returns the key columns of raw decoded, nil when one does not decode.
func (r *chunkReader) decodeKey(raw [][]byte) change.Row {
	key := change.Row{}
	for i, c := range r.t.Columns {
		if !c.Key || raw[i] == nil {
			continue
		}
		v, err := r.dec.decode(c, raw[i])
		if err != nil {
			return nil
		}
		key[c.Name] = v
	}
	return key
}

// each calls fn with every row of the first chunk within b, in key order, as its values in the
// table's column order and as the text PostgreSQL sent, and returns how many rows there were
// and the text of the last one's key (nil when none). A row that does not decode goes to bad
// instead, with the error; without bad it ends the read. The values and the text are reused
// from row to row: fn and bad must not keep them.
func (r *chunkReader) each(ctx context.Context, db querier, b keyBounds, bad func(raw [][]byte, err error) error,
	fn func(vals []any, raw [][]byte) error) (int, []string, error) {
	vals := make([]any, len(r.t.Columns))
	query, args := r.query(b)
	return r.eachRow(ctx, db, query, args, true, textResults, func(raw [][]byte) error {
		err := r.decodeRow(raw, vals)
		if err == nil {
			return fn(vals, raw)
		}
		if bad == nil {
			return err
		}
		return bad(raw, err)
	})
}

// eachRaw calls fn with every row of the first chunk within b, in key order, as PostgreSQL sent
// it in a snapshot's formats (r.formats; reused from row to row: fn must not keep it), and
// returns how many rows there were and the text of the last one's key (nil when none).
func (r *chunkReader) eachRaw(ctx context.Context, db querier, b keyBounds, fn func(raw [][]byte) error) (int, []string, error) {
	query, args := r.query(b)
	return r.eachRow(ctx, db, query, args, true, r.formats, fn)
}

// eachRow runs query, its results in formats, and calls fn with every row it returns, as eachRaw
// does; it returns the last row's key only when lastKey is set.
func (r *chunkReader) eachRow(ctx context.Context, db querier, query string, args []any, lastKey bool,
	formats pgx.QueryResultFormats, fn func(raw [][]byte) error) (int, []string, error) {
	rows, err := db.Query(ctx, query, append([]any{formats}, args...)...)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	n := 0
	var key []byte // the last row's key columns' text, one after another
	var keyLens []int
	for rows.Next() {
		raw := rows.RawValues()
		if err := fn(raw); err != nil {
			return 0, nil, err
		}
		n++
		if !lastKey {
			continue
		}
		key, keyLens = key[:0], keyLens[:0]
		for i, c := range r.t.Columns {
			if c.Key && raw[i] != nil {
				key = append(key, raw[i]...)
				keyLens = append(keyLens, len(raw[i]))
			}
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if n == 0 || !lastKey {
		return n, nil, nil
	}
	last := make([]string, len(keyLens))
	for i, l := range keyLens {
		last[i], key = string(key[:l]), key[l:]
	}
	return n, last, nil
}

// rawJSON is raw, a row as PostgreSQL wrote it, as a JSON object of its columns' text
// (binaryText for those binary marks as read in binary; binary may be nil): what a dead letter
// keeps of a row capture could not decode.
func (r *chunkReader) rawJSON(raw [][]byte, binary []bool) []byte {
	row := make(map[string]any, len(r.t.Columns))
	for i, c := range r.t.Columns {
		switch {
		case raw[i] == nil:
			row[c.Name] = nil
		case binary != nil && binary[i]:
			row[c.Name] = binaryText(c.Kind, raw[i])
		default:
			row[c.Name] = string(raw[i])
		}
	}
	b, _ := json.Marshal(row) // strings and nils only
	return b
}

// nullKey returns the first key column that is NULL in raw.
func (r *chunkReader) nullKey(raw [][]byte) (string, bool) {
	for i, c := range r.t.Columns {
		if c.Key && raw[i] == nil {
			return c.Name, true
		}
	}
	return "", false
}

// decodeRow decodes a row into vals, in the table's column order. The columns' text is copied
// into one string, which the values decoded from text slice: one allocation a row rather than
// one a column.
func (r *chunkReader) decodeRow(raw [][]byte, vals []any) error {
	n := 0
	for _, b := range raw {
		n += len(b)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, b := range raw {
		sb.Write(b)
	}
	all := sb.String()
	at := 0
	for i, c := range r.t.Columns {
		if raw[i] == nil {
			vals[i] = nil
			continue
		}
		text := all[at : at+len(raw[i])]
		at += len(raw[i])
		var v any
		var err error
		if c.Kind == change.KindArray || c.Kind == change.KindBytes {
			v, err = r.dec.decode(c, raw[i])
		} else {
			v, err = decodeScalarString(c.Kind, text)
		}
		if err != nil {
			return fmt.Errorf("column %q: %w", c.Name, err)
		}
		vals[i] = v
	}
	return nil
}
