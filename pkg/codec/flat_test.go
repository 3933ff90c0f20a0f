package codec

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// Rows as Debezium's ExtractNewRecordState writes them, in the three encodings a sink reads:
// updates by default, the op of __op, deletes rewritten with __deleted, tombstones as deletes of
// their key, metadata fields out of the row and the table, key columns marked from the key.
func TestDecodeRow(t *testing.T) {
	ctx := context.Background()
	const topic = "dbserver1.inventory.articles"
	keySchema := `{"type":"record","name":"Key","namespace":"dbserver1.inventory.articles","fields":[{"name":"id","type":"int"}]}`
	rowSchema := `{"type":"record","name":"Value","namespace":"dbserver1.inventory.articles","fields":[` +
		`{"name":"id","type":"int"},{"name":"title","type":["null","string"],"default":null},` +
		`{"name":"__op","type":["null","string"],"default":null},{"name":"__lsn","type":["null","long"],"default":null},` +
		`{"name":"__deleted","type":["null","string"],"default":null}]}`
	// As Confluent's JDBC source connector names its rows: no namespace.
	bareSchema := `{"type":"record","name":"ConnectDefault","fields":[{"name":"id","type":"int"},{"name":"title","type":["null","string"],"default":null}]}`
	cl, _ := registryStub(t, map[int]string{30: keySchema, 31: rowSchema, 32: `"long"`, 33: bareSchema})
	dec, err := NewDecoder(DecoderRegistry(cl))
	if err != nil {
		t.Fatal(err)
	}
	avroKey := confluentFrame(30, mustAvro(t, keySchema, map[string]any{"id": 42}))
	avroRow := func(op, deleted any, lsn any) []byte {
		return confluentFrame(31, mustAvro(t, rowSchema, map[string]any{"id": 42, "title": map[string]any{"string": "t"},
			"__op": op, "__lsn": lsn, "__deleted": deleted}))
	}
	str := func(s string) any { return map[string]any{"string": s} }
	const connectSchema = `{"type":"struct","name":"dbserver1.inventory.articles.Value","fields":[` +
		`{"field":"id","type":"int32"},{"field":"title","type":"string","optional":true},` +
		`{"field":"__op","type":"string","optional":true},{"field":"__deleted","type":"string","optional":true}]}`
	jsonKey := []byte(`{"id":42}`)
	row := change.Row{"id": int64(42), "title": "t"}
	avroRowVals := change.Row{"id": int32(42), "title": "t"}

	cases := []struct {
		name       string
		key, value []byte
		op         change.Op
		before     change.Row
		after      change.Row
		lsn        int64
		headers    map[string]string
		noKey      bool // the key names no columns
		err        string
	}{
		{name: "avro update", key: avroKey, value: avroRow(nil, nil, nil), op: change.OpUpdate, after: avroRowVals},
		{name: "avro create with lsn", key: avroKey, value: avroRow(str("c"), str("false"), map[string]any{"long": int64(99)}),
			op: change.OpCreate, after: avroRowVals, lsn: 99},
		{name: "avro rewritten delete", key: avroKey, value: avroRow(str("d"), str("true"), nil), op: change.OpDelete, before: avroRowVals},
		{name: "avro row named without a namespace", key: avroKey, value: confluentFrame(33, mustAvro(t, bareSchema,
			map[string]any{"id": 42, "title": str("t")})), op: change.OpUpdate, after: avroRowVals},
		{name: "avro tombstone", key: avroKey, op: change.OpDelete, before: change.Row{"id": int32(42)}},
		{name: "json update", key: jsonKey, value: []byte(`{"id":42,"title":"t"}`), op: change.OpUpdate, after: row},
		{name: "json read", key: jsonKey, value: []byte(`{"id":42,"title":"t","__op":"r"}`), op: change.OpRead, after: row},
		{name: "json deleted", key: jsonKey, value: []byte(`{"id":42,"title":"t","__deleted":"true"}`), op: change.OpDelete, before: row},
		{name: "json deleted boolean", key: jsonKey, value: []byte(`{"id":42,"title":"t","__deleted":true}`), op: change.OpDelete, before: row},
		{name: "json tombstone", key: jsonKey, op: change.OpDelete, before: change.Row{"id": int64(42)}},
		{name: "connect update", key: jsonKey, value: []byte(`{"schema":` + connectSchema + `,"payload":{"id":42,"title":"t","__deleted":"false"}}`),
			op: change.OpUpdate, after: change.Row{"id": int32(42), "title": "t"}},
		{name: "connect wrapped tombstone", key: jsonKey, value: []byte(`{"schema":null,"payload":null}`),
			op: change.OpDelete, before: change.Row{"id": int64(42)}},
		{name: "avro row with a plain key", key: confluentFrame(32, mustAvro(t, `"long"`, int64(42))), value: avroRow(nil, nil, nil),
			op: change.OpUpdate, after: avroRowVals, noKey: true},
		{name: "json row with a plain key", key: []byte(`{"schema":{"type":"int32"},"payload":42}`), value: []byte(`{"id":42,"title":"t"}`),
			op: change.OpUpdate, after: row, noKey: true},
		{name: "tombstone with a plain key", key: confluentFrame(32, mustAvro(t, `"long"`, int64(42))), err: "does not decode to key columns"},
		{name: "op in a header", key: jsonKey, value: []byte(`{"id":42,"title":"t"}`), headers: map[string]string{"__op": "c"},
			op: change.OpCreate, after: row},
		{name: "delete in a header", key: jsonKey, value: []byte(`{"id":42,"title":"t"}`), headers: map[string]string{"__op": "d", "__lsn": "77"},
			op: change.OpDelete, before: row, lsn: 77},
		{name: "field over header", key: jsonKey, value: []byte(`{"id":42,"title":"t","__op":"r"}`), headers: map[string]string{"__op": "c"},
			op: change.OpRead, after: row},
		{name: "bad op header", key: jsonKey, value: []byte(`{"id":42}`), headers: map[string]string{"__op": "z"}, err: "header __op"},
		{name: "tombstone without key", err: "without a key"},
		{name: "envelope", key: jsonKey, value: []byte(`{"op":"c","after":{"id":42},"source":{}}`), err: "envelope: debezium"},
		{name: "bad op", key: jsonKey, value: []byte(`{"id":42,"__op":"x"}`), err: `field __op: op "x"`},
		{name: "bad deleted", key: jsonKey, value: []byte(`{"id":42,"__deleted":"maybe"}`), err: "field __deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := dec.DecodeRow(ctx, topic, tc.key, tc.value, tc.headers)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("decoded %+v, error %v; want an error with %q", ev, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Op != tc.op || !reflect.DeepEqual(ev.Before, tc.before) || !reflect.DeepEqual(ev.After, tc.after) || ev.Source.LSN != tc.lsn {
				t.Fatalf("got op %q before %v after %v lsn %d; want %q %v %v %d", ev.Op, ev.Before, ev.After, ev.Source.LSN,
					tc.op, tc.before, tc.after, tc.lsn)
			}
			if ev.Table.Schema != "inventory" || ev.Table.Name != "articles" {
				t.Errorf("table %s.%s, want inventory.articles", ev.Table.Schema, ev.Table.Name)
			}
			var cols, keys []string
			for _, c := range ev.Table.Columns {
				cols = append(cols, c.Name)
			}
			for _, c := range ev.Table.KeyColumns() {
				keys = append(keys, c.Name)
			}
			wantKeys := []string{"id"}
			if tc.noKey {
				wantKeys = nil
			}
			if strings.Contains(strings.Join(cols, ","), "__") || !reflect.DeepEqual(keys, wantKeys) {
				t.Errorf("columns %v, key %v: want no metadata columns and the key %v", cols, keys, wantKeys)
			}
		})
	}
}

// A placeholder in a row stands for an unchanged TOAST value, as in an envelope's after.
func TestDecodeRowPlaceholder(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.DecodeRow(context.Background(), "db.public.docs", []byte(`{"id":1}`),
		[]byte(`{"id":1,"body":"`+DefaultUnavailableValue+`","__op":"u"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ev.UnchangedToast, []string{"body"}) || ev.After["body"] != nil {
		t.Fatalf("after %v, unchanged %v: want body unchanged", ev.After, ev.UnchangedToast)
	}
}

func mustAvro(t *testing.T, schema string, v any) []byte {
	t.Helper()
	b, err := avro.Marshal(avro.MustParse(schema), v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
