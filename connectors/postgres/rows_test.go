package postgres

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// rowsSource is a source table of every kind RowBuffer takes, plus a column the mapping leaves
// out.
var rowsSource = &change.Table{Schema: "public", Name: "src", Columns: []change.Column{
	{Name: "id", Kind: change.KindInt64, Key: true},
	{Name: "small", Kind: change.KindInt16},
	{Name: "i4", Kind: change.KindInt32},
	{Name: "f4", Kind: change.KindFloat32},
	{Name: "f8", Kind: change.KindFloat64},
	{Name: "num", Kind: change.KindNumeric},
	{Name: "flag", Kind: change.KindBool},
	{Name: "txt", Kind: change.KindString},
	{Name: "mood", Kind: change.KindEnum},
	{Name: "data", Kind: change.KindBytes},
	{Name: "tstz", Kind: change.KindTimestampTZ},
	{Name: "iv", Kind: change.KindInterval},
	{Name: "u", Kind: change.KindUUID},
	{Name: "j", Kind: change.KindJSON},
	{Name: "raw", Kind: change.KindBytes},   // into text: as text when UTF-8, else hex
	{Name: "btxt", Kind: change.KindString}, // into bytea: hex of the text
	{Name: "left_out", Kind: change.KindString},
}}

const rowsTargetDDL = ` (
	id int8 PRIMARY KEY, small int2, i4 int4, f4 real, f8 float8, num numeric, flag bool, txt text,
	mood mood, data bytea, tstz timestamptz, iv interval, u uuid, j jsonb, raw text, btxt bytea,
	left_out text DEFAULT 'default')`

// rowsData has NULLs, COPY's special characters, non-finite floats, offsets and bytes that are
// not UTF-8.
func rowsData() []change.Row {
	full := change.Row{
		"id": int64(1), "small": int32(-7), "i4": int32(123456), "f4": float32(1.5), "f8": 0.1,
		"num": "12345678901234567890.000000000000000001", "flag": true,
		"txt": "tab\there\nnewline\r\\N back\\slash \\. é", "mood": "happy", "data": []byte{0, 1, '\\', '\t', 255},
		"tstz": "2024-05-01T10:00:00.000001+05:30", "iv": "P1Y2M3DT4H5M6.5S",
		"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": `{"a": [1, 2], "b": "t\tab"}`,
		"raw": []byte("plain\ttext é"), "btxt": "bytes\\", "left_out": "never written",
	}
	nulls := change.Row{"id": int64(2)}
	for _, c := range rowsSource.Columns[1:] {
		nulls[c.Name] = nil
	}
	odd := change.Row{}
	for k, v := range full {
		odd[k] = v
	}
	odd["id"], odd["f4"], odd["f8"], odd["num"] = int64(3), float32(math.Inf(-1)), math.NaN(), "NaN"
	odd["txt"], odd["raw"], odd["tstz"], odd["flag"] = `\N`, []byte{0xff, 0, 'x'}, "2024-02-29T23:59:59Z", false
	big := change.Row{}
	for k, v := range full {
		big[k] = v
	}
	big["id"], big["f8"], big["i4"], big["small"] = int64(math.MaxInt64), 1e300, int32(math.MinInt32), int32(math.MaxInt16)
	return []change.Row{full, nulls, odd, big}
}

// rowsCodec is an encoder and a decoder sharing a schema store.
func rowsCodec(t *testing.T) (*codec.Encoder, *codec.Decoder) {
	t.Helper()
	store := codec.NewSchemaStore()
	var mu sync.Mutex
	enc, err := codec.NewEncoder(codec.TopicPrefix("wh"), codec.SchemaPublisher(func(_ context.Context, _ uint64, schema []byte) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := store.Add(schema)
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		t.Fatal(err)
	}
	return enc, dec
}

// rowsMapping maps every column of rowsSource but left_out under its own name.
func rowsMapping(t *testing.T) *mapping.Mapping {
	t.Helper()
	fields := map[string]string{}
	for _, c := range rowsSource.Columns {
		if c.Name != "left_out" {
			fields[c.Name] = "after." + c.Name
		}
	}
	m, err := mapping.Compile(mapping.Spec{Sink: "test", Fields: fields, Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loadRows scans the encoded created rows into a RowBuffer of c and loads them.
func loadRows(t *testing.T, c *Connector, dec *codec.Decoder, m *mapping.Mapping, values [][]byte, next int64) error {
	t.Helper()
	ctx := context.Background()
	st := dec.ScanTable(ctx, values[0])
	if st == nil {
		t.Fatal("ScanTable refused the created rows")
	}
	fields, ok := m.Projection(st)
	if !ok {
		t.Fatal("the mapping is not a projection")
	}
	buf, err := c.RowBuffer(st, fields)
	if err != nil {
		t.Fatalf("RowBuffer: %v", err)
	}
	for _, v := range values {
		if _, ok := dec.ScanCreated(ctx, v, st, buf); !ok {
			t.Fatal("ScanCreated refused a created row")
		}
		if !buf.EndRow() {
			t.Fatal("EndRow refused a row with a key")
		}
	}
	return buf.Load(ctx, &sink.Batch{Sink: "test", Topic: "wh.public.src", NextOffset: next})
}

// TestRowBufferWritesWhatRecordsWrite loads the same created rows through RowBuffer (COPY from
// the scanned messages) and through Apply (decoded, mapped Records, as upserts) into two equal
// tables: every value must come out the same, with the offset stored alongside.
func TestRowBufferWritesWhatRecordsWrite(t *testing.T) {
	ctx := context.Background()
	d := newDB(t, nil)
	d.exec(`CREATE TYPE mood AS ENUM ('sad', 'happy')`)
	d.exec(`CREATE TABLE direct` + rowsTargetDDL)
	d.exec(`CREATE TABLE via_records` + rowsTargetDDL)
	direct := d.open(map[string]any{"table": "direct"}, "id")
	records := d.open(map[string]any{"table": "via_records", "copy_inserts": false}, "id")
	enc, dec := rowsCodec(t)
	m := rowsMapping(t)

	var values [][]byte
	var recs []sink.Record
	for i, row := range rowsData() {
		ev := &change.Event{Op: change.OpCreate, Table: rowsSource, After: row,
			Source: change.Source{Name: "wh", Schema: "public", Table: "src", TsMs: 1714557600000}}
		_, value, err := enc.Encode(ctx, "wh.public.src", ev)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, value)
		got, err := dec.Decode(ctx, "wh.public.src", nil, value)
		if err != nil {
			t.Fatal(err)
		}
		fields, _, err := m.Apply(got)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, sink.Record{Op: sink.OpUpsert, Key: map[string]any{"id": fields["id"]}, KeyOrder: []string{"id"},
			Fields: fields, FieldOrder: m.Order(fields), Event: got, Topic: "wh.public.src", Offset: int64(i)})
	}
	if err := loadRows(t, direct, dec, m, values, 4); err != nil {
		t.Fatalf("Load: %v", err)
	}
	apply(t, records, batch(4, recs...))
	if direct.copies.Load() != 1 {
		t.Fatalf("RowBuffer loaded %d COPY batches, want 1", direct.copies.Load())
	}
	got := d.rows(`SELECT * FROM direct ORDER BY id`)
	want := d.rows(`SELECT * FROM via_records ORDER BY id`)
	if len(got) != len(rowsData()) || !slices.Equal(got, want) {
		t.Fatalf("rows differ\n direct:  %q\n records: %q", got, want)
	}
	if !strings.HasSuffix(got[0], "|default") {
		t.Fatalf("the column the mapping leaves out was written: %q", got[0])
	}
	d.wantRows(`SELECT sink, next_offset FROM backflow_offsets WHERE "partition" >= 0 ORDER BY 1`, "test|4")
}

// TestRowBufferLoadFails: rows whose keys the table has already fail to load and leave the
// table and the stored offset as they were (the runtime then applies them as records); a null
// key refuses the row.
func TestRowBufferLoadFails(t *testing.T) {
	ctx := context.Background()
	d := newDB(t, nil)
	d.exec(`CREATE TYPE mood AS ENUM ('sad', 'happy')`)
	d.exec(`CREATE TABLE direct` + rowsTargetDDL)
	c := d.open(map[string]any{"table": "direct"}, "id")
	enc, dec := rowsCodec(t)
	m := rowsMapping(t)
	encode := func(row change.Row) []byte {
		_, v, err := enc.Encode(ctx, "wh.public.src", &change.Event{Op: change.OpCreate, Table: rowsSource, After: row})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rows := rowsData()
	if err := loadRows(t, c, dec, m, [][]byte{encode(rows[0])}, 1); err != nil {
		t.Fatal(err)
	}
	err := loadRows(t, c, dec, m, [][]byte{encode(rows[1]), encode(rows[0])}, 3)
	if err == nil || !strings.Contains(err.Error(), "duplicate key") {
		t.Fatalf("Load of a key the table has = %v, want a duplicate key error", err)
	}
	d.wantRows(`SELECT id FROM direct ORDER BY id`, "1")
	d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "1")

	st := dec.ScanTable(ctx, encode(rows[0]))
	fields, _ := m.Projection(st)
	c.copyGate = copyGate{} // the failure above paused COPY
	buf, err := c.RowBuffer(st, fields)
	if err != nil {
		t.Fatal(err)
	}
	// The encoder never writes a null key column, but a Debezium topic keyed otherwise can.
	buf.Null(0)
	if buf.EndRow() {
		t.Fatal("EndRow took a row with a null key")
	}
	buf.Int(0, 5)
	if !buf.EndRow() {
		t.Fatal("EndRow refused the row after it")
	}
}

// TestRowBufferRefuses lists what RowBuffer leaves to the records path.
func TestRowBufferRefuses(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE plain (id int8 PRIMARY KEY, at text, d date, v text)`)
	d.exec(`CREATE TABLE soft (id int8 PRIMARY KEY, at timestamptz, deleted bool)`)
	d.exec(`CREATE TABLE ident (id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz)`)
	src := func(cols ...change.Column) *change.Table {
		return &change.Table{Schema: "public", Name: "src", Columns: append([]change.Column{{Name: "id", Kind: change.KindInt64, Key: true}}, cols...)}
	}
	tstz := change.Column{Name: "at", Kind: change.KindTimestampTZ}
	cases := []struct {
		name  string
		with  map[string]any
		soft  string
		table *change.Table
		want  string
	}{
		{"timestamptz into text", map[string]any{"table": "plain"}, "", src(tstz), "goes into text through its mapped value"},
		{"date", map[string]any{"table": "plain"}, "", src(change.Column{Name: "d", Kind: change.KindDate}), "through its mapped value"},
		{"array", map[string]any{"table": "plain"}, "", src(change.Column{Name: "v", Kind: change.KindArray, Elem: change.KindString}), "through its mapped value"},
		{"unknown column", map[string]any{"table": "plain"}, "", src(change.Column{Name: "nope", Kind: change.KindString}), "not a plain writable column"},
		{"copy_inserts off", map[string]any{"table": "plain", "copy_inserts": false}, "", src(), "copy_inserts is off"},
		{"soft delete", map[string]any{"table": "soft", "soft_delete_column": "deleted"}, "deleted", src(tstz), "soft delete"},
		{"identity always", map[string]any{"table": "ident"}, "", src(tstz), "not a plain writable column"},
		{"missing table", map[string]any{"table": "later", "auto_create": true}, "", src(tstz), "does not exist yet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.with["url"] = d.url
			conn, err := New(context.Background(), sink.Params{Sink: "test", With: tc.with, Key: []string{"id"}, SoftDeleteColumn: tc.soft})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fields := make([]string, len(tc.table.Columns))
			for i, c := range tc.table.Columns {
				fields[i] = c.Name
			}
			_, err = conn.(*Connector).RowBuffer(tc.table, fields)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RowBuffer = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
