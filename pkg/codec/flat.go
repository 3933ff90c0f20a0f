package codec

// Topics of bare rows: what Debezium's ExtractNewRecordState (unwrap) transform writes, and what
// Confluent's JDBC source connector or any producer of rows keyed by the primary key writes.
// Each value is the row as it is now; a tombstone (null value) deletes its key's row. The
// transform can add the change's metadata as fields named "__<field>" (add.fields=op,lsn,…) or
// as headers of those names (add.headers), and rewrite a delete as the old row with
// "__deleted": "true" (delete.handling.mode=rewrite). Those fields are read here and are not
// columns of the row.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
)

// metaPrefix starts the names of the metadata fields ExtractNewRecordState adds (its
// add.fields.prefix default).
const metaPrefix = "__"

// DecodeRow decodes the record (key, value) of a topic of bare rows into a change event:
//
//   - a value is an update of its row (After), or the op its "__op" field names (c, u, r;
//     d deletes); "__deleted" true makes it a delete of that row (Before);
//   - a null or empty value (a tombstone) deletes the row of its key: Before holds the key's
//     columns;
//   - "__lsn" (or "__source_lsn") becomes Source.LSN, "__source_ts_ms" Source.TsMs and
//     "__ts_ms" TsMs; every field named "__…" is left out of the row and the table.
//
// The key's fields mark the table's key columns. A value that is a change envelope (op with
// before or after) is refused: it belongs to a sink that reads change events.
//
// headers holds the metadata the transform put in record headers instead (add.headers=op,…), by
// header name ("__op"); the row's own fields take precedence.
func (d *Decoder) DecodeRow(ctx context.Context, topic string, key, value []byte, headers map[string]string) (*change.Event, error) {
	ev, err := d.decodeRow(ctx, topic, key, value, headers)
	if err != nil {
		return nil, fmt.Errorf("codec: decode row of topic %q: %w", topic, err)
	}
	return ev, nil
}

func (d *Decoder) decodeRow(ctx context.Context, topic string, key, value []byte, headers map[string]string) (*change.Event, error) {
	if len(value) == 0 {
		return d.rowTombstone(ctx, topic, key)
	}
	var t *change.Table
	var row change.Row
	var placeholders bool
	var err error
	if isJSON(value) {
		t, row, err = d.decodeJSONRow(topic, key, value)
		placeholders = d.cfg.ph != nil
	} else {
		t, row, placeholders, err = d.decodeAvroRow(ctx, topic, key, value)
	}
	switch {
	case err != nil:
		return nil, err
	case t == nil:
		return d.rowTombstone(ctx, topic, key) // a JSON tombstone wrapped in its schema
	}
	ev, err := rowEvent(t, row, headers)
	if err != nil {
		return nil, err
	}
	if placeholders {
		resolveUnavailable(ev)
	}
	return ev, nil
}

// rowTombstone is the delete a tombstone of a topic of rows stands for.
func (d *Decoder) rowTombstone(ctx context.Context, topic string, key []byte) (*change.Event, error) {
	if len(key) == 0 {
		return nil, errors.New("a tombstone without a key: nothing says which row it deletes")
	}
	kt, row, err := d.DecodeKey(ctx, topic, key)
	if err != nil {
		return nil, fmt.Errorf("tombstone: it deletes the row its key names, and the key does not decode "+
			"to key columns: %w", err)
	}
	cols := make([]jsonColumn, len(kt.Columns))
	for i, c := range kt.Columns {
		c.Key = true // an Avro key's table does not say so
		cols[i] = jsonColumn{col: c}
	}
	t := d.jsonTable("key", kt.Schema, kt.Name, cols)
	return &change.Event{Op: change.OpDelete, Table: t, Before: row,
		Source: change.Source{Schema: t.Schema, Table: t.Name}}, nil
}

// decodeJSONRow decodes a JSON row, with or without its Connect schema; a wrapped null payload
// gives a nil table.
func (d *Decoder) decodeJSONRow(topic string, key, value []byte) (*change.Table, change.Row, error) {
	payload, schemaRaw, err := unwrap(value)
	if err != nil {
		return nil, nil, err
	}
	if isNull(payload) {
		return nil, nil, nil
	}
	fields, err := splitObject(payload)
	if err != nil {
		return nil, nil, err
	}
	if isEnvelope(fields, func(f jsonField) string { return f.name }) {
		return nil, nil, errEnvelope
	}
	var cols []jsonColumn
	var name string
	guessed := isNull(schemaRaw)
	if guessed {
		if cols, err = inferColumns(fields, nil); err != nil {
			return nil, nil, err
		}
	} else {
		cs, err := d.connectSchema(schemaRaw, true)
		if err != nil {
			return nil, nil, err
		}
		name, cols = cs.name, append([]jsonColumn(nil), cs.cols...) // markKeys writes to them
	}
	_ = markKeys(cols, key) // a key that is no object of columns marks none (see rowKeyNames)
	row, err := jsonRow(cols, fields, payload, rowPlaceholder{ph: d.cfg.ph, guessed: guessed})
	if err != nil {
		return nil, nil, err
	}
	schema, table := namesFrom(name, topic)
	return d.jsonTable("row", schema, table, withoutMeta(cols)), row, nil
}

// decodeAvroRow decodes an Avro row (a record of columns) and marks its key columns from the
// key's.
func (d *Decoder) decodeAvroRow(ctx context.Context, topic string, key, value []byte) (*change.Table, change.Row, bool, error) {
	cs, body, what, err := d.writerSchema(ctx, value)
	if err != nil {
		return nil, nil, false, err
	}
	p, err := cs.record("value")
	if err != nil {
		return nil, nil, false, fmt.Errorf("writer schema %s: %w", what, err)
	}
	if isEnvelope(p.table.Columns, func(c change.Column) string { return c.Name }) {
		return nil, nil, false, errEnvelope
	}
	row, err := decodeBody(body, p.read)
	if err != nil {
		return nil, nil, false, fmt.Errorf("with writer schema %s: %w", what, err)
	}
	keyNames, err := d.rowKeyNames(ctx, topic, key)
	if err != nil {
		return nil, nil, false, err
	}
	cols := make([]jsonColumn, len(p.table.Columns))
	for i, c := range p.table.Columns {
		c.Key = keyNames[c.Name]
		cols[i] = jsonColumn{col: c}
	}
	schema, table := p.table.Schema, p.table.Name
	if schema == "" && table == "" {
		schema, table = namesFrom("", topic) // a record named without a namespace (ConnectDefault)
	}
	return d.jsonTable("row", schema, table, withoutMeta(cols)), row, p.placeholders, nil
}

// rowKeyNames names the columns of a row's key, to mark them in its table. A key that is no
// record of columns (a plain value, as a string or an Avro long) marks none: it still orders the
// topic, and the sink's key names the target's identity. Only a schema that cannot be had now
// fails, so that the sink waits or reads its schema topics again.
func (d *Decoder) rowKeyNames(ctx context.Context, topic string, key []byte) (map[string]bool, error) {
	names := map[string]bool{}
	kt, _, err := d.DecodeKey(ctx, topic, key)
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrUnknownSchema):
		return nil, err
	case err != nil || kt == nil:
		return names, nil
	}
	for _, c := range kt.Columns {
		names[c.Name] = true
	}
	return names, nil
}

// errEnvelope refuses a change event read as a row.
var errEnvelope = errors.New("the value is a change event envelope (op with before or after), not a row: " +
	"read this topic with envelope: debezium")

// isEnvelope reports whether fields named by name hold an op and a before or an after.
func isEnvelope[T any](fields []T, name func(T) string) bool {
	var op, side bool
	for _, f := range fields {
		switch name(f) {
		case "op":
			op = true
		case "before", "after":
			side = true
		}
	}
	return op && side
}

// withoutMeta returns cols without the metadata fields.
func withoutMeta(cols []jsonColumn) []jsonColumn {
	out := cols[:0:0]
	for _, c := range cols {
		if !strings.HasPrefix(c.col.Name, metaPrefix) {
			out = append(out, c)
		}
	}
	return out
}

// rowEvent makes the event of a decoded row of t, taking the metadata fields out of row; those
// of headers apply first.
func rowEvent(t *change.Table, row change.Row, headers map[string]string) (*change.Event, error) {
	ev := &change.Event{Op: change.OpUpdate, Table: t, Source: change.Source{Schema: t.Schema, Table: t.Name}}
	m := rowMeta{ev: ev}
	for name, v := range headers {
		if err := m.read(name, v); err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
	}
	for name, v := range row {
		if !strings.HasPrefix(name, metaPrefix) {
			continue
		}
		delete(row, name)
		if err := m.read(name, v); err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
	}
	if m.deleted || ev.Op == change.OpDelete {
		ev.Op, ev.Before = change.OpDelete, row
		return ev, nil
	}
	ev.After = row
	return ev, nil
}

// rowMeta reads metadata fields into an event.
type rowMeta struct {
	ev      *change.Event
	deleted bool
}

// read reads one metadata field; names it does not know are ignored.
func (m *rowMeta) read(name string, v any) error {
	var err error
	switch name {
	case "__op":
		m.ev.Op, err = rowOp(v)
	case "__deleted":
		m.deleted, err = metaBool(v)
	case "__lsn", "__source_lsn":
		m.ev.Source.LSN, err = metaInt(v)
	case "__source_ts_ms":
		m.ev.Source.TsMs, err = metaInt(v)
	case "__ts_ms":
		m.ev.TsMs, err = metaInt(v)
	}
	return err
}

// rowOp reads an "__op" field: c, u or r; d for a rewritten delete. An absent op (null) is an
// update.
func rowOp(v any) (change.Op, error) {
	if v == nil {
		return change.OpUpdate, nil
	}
	s, ok := v.(string)
	switch op := change.Op(s); {
	case !ok:
		return "", fmt.Errorf("is %T, want a string", v)
	case op == change.OpCreate, op == change.OpUpdate, op == change.OpRead, op == change.OpDelete:
		return op, nil
	default:
		return "", fmt.Errorf("op %q is not c, u, r or d", s)
	}
}

// metaBool reads "__deleted": a string ("true", "false") as the transform writes it, or a
// boolean.
func metaBool(v any) (bool, error) {
	switch b := v.(type) {
	case nil:
		return false, nil
	case bool:
		return b, nil
	case string:
		return strconv.ParseBool(b)
	}
	return false, fmt.Errorf("is %T, want \"true\" or \"false\"", v)
}

// metaInt reads an integer metadata field.
func metaInt(v any) (int64, error) {
	switch n := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return n, nil
	case int32:
		return int64(n), nil
	case int:
		return int64(n), nil
	case json.Number:
		return n.Int64()
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("is %T, want an integer", v)
}
