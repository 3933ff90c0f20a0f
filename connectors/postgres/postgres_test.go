package postgres

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// shared is one PostgreSQL cluster for the package's tests; each test gets its own database.
var shared *testenv.Postgres

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, err := testenv.StartPostgres(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: start PostgreSQL:", err)
		os.Exit(1)
	}
	shared = pg
	code := m.Run()
	if err := pg.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: close PostgreSQL:", err)
	}
	os.Exit(code)
}

var dbSeq atomic.Int64

// testDB is a fresh database with a connection for checking what the connector wrote.
type testDB struct {
	t    testing.TB
	pg   *testenv.Postgres
	name string
	url  string
	conn *pgx.Conn
}

func newDB(t testing.TB, pg *testenv.Postgres) *testDB {
	t.Helper()
	if pg == nil {
		pg = shared
	}
	ctx := context.Background()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := pg.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	conn, err := pg.Connect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &testDB{t: t, pg: pg, name: name, url: pg.URL(name), conn: conn}
}

func (d *testDB) exec(sql string, args ...any) {
	d.t.Helper()
	if _, err := d.conn.Exec(context.Background(), sql, args...); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
}

// rows returns the query's rows, every value as text ("<NULL>" for NULL), one string per row
// with values separated by "|".
func (d *testDB) rows(sql string, args ...any) []string {
	d.t.Helper()
	args = append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)
	rs, err := d.conn.Query(context.Background(), sql, args...)
	if err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		raw := rs.RawValues()
		parts := make([]string, len(raw))
		for i, v := range raw {
			if v == nil {
				parts[i] = "<NULL>"
			} else {
				parts[i] = string(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rs.Err(); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func (d *testDB) wantRows(sql string, want ...string) {
	d.t.Helper()
	got := d.rows(sql)
	if !slices.Equal(got, want) {
		d.t.Fatalf("%s:\n got %q\nwant %q", sql, got, want)
	}
}

// open builds a connector on the database; with gets url when it has none.
func (d *testDB) open(with map[string]any, key ...string) *Connector {
	d.t.Helper()
	c, err := d.tryOpen(with, key...)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

func (d *testDB) tryOpen(with map[string]any, key ...string) (*Connector, error) {
	if _, ok := with["url"]; !ok {
		with["url"] = d.url
	}
	c, err := New(context.Background(), sink.Params{Sink: "test", With: with, Key: key})
	if err != nil {
		return nil, err
	}
	d.t.Cleanup(func() { _ = c.Close() })
	return c.(*Connector), nil
}

var offsetSeq atomic.Int64

func up(fields map[string]any, key ...string) sink.Record {
	r := sink.Record{Op: sink.OpUpsert, Key: map[string]any{}, Fields: fields, KeyOrder: key,
		Topic: "wh.public.src", Offset: offsetSeq.Add(1)}
	for _, k := range key {
		r.Key[k] = fields[k]
	}
	for n := range fields {
		r.FieldOrder = append(r.FieldOrder, n)
	}
	slices.Sort(r.FieldOrder)
	return r
}

func del(key map[string]any) sink.Record {
	r := sink.Record{Op: sink.OpDelete, Key: key, Topic: "wh.public.src", Offset: offsetSeq.Add(1)}
	for k := range key {
		r.KeyOrder = append(r.KeyOrder, k)
	}
	return r
}

func truncate() sink.Record {
	return sink.Record{Op: sink.OpTruncate, Topic: "wh.public.src", Offset: offsetSeq.Add(1)}
}

func batch(next int64, recs ...sink.Record) *sink.Batch {
	return &sink.Batch{Sink: "test", Topic: "wh.public.src", Partition: 0, Records: recs, NextOffset: next}
}

func apply(t testing.TB, c *Connector, b *sink.Batch) {
	t.Helper()
	if err := c.Apply(context.Background(), b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func TestCompositeKeyAndDeletes(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE inv (warehouse int, sku text, qty int, PRIMARY KEY (warehouse, sku))`)
	// key order differs from the table's column order on purpose
	c := d.open(map[string]any{"table": "public.inv"}, "sku", "warehouse")
	apply(t, c, batch(4,
		up(map[string]any{"sku": "a", "warehouse": int32(1), "qty": int32(5)}, "sku", "warehouse"),
		up(map[string]any{"sku": "a", "warehouse": int32(2), "qty": int32(6)}, "sku", "warehouse"),
		up(map[string]any{"sku": "b", "warehouse": int32(1), "qty": int32(7)}, "sku", "warehouse"),
		up(map[string]any{"sku": "b", "warehouse": int32(2), "qty": int32(8)}, "sku", "warehouse"),
	))
	apply(t, c, batch(7,
		del(map[string]any{"sku": "a", "warehouse": int32(2)}),
		up(map[string]any{"sku": "b", "warehouse": int32(1), "qty": int32(70)}, "sku", "warehouse"),
		del(map[string]any{"sku": "b", "warehouse": int32(2)}),
		del(map[string]any{"sku": "zz", "warehouse": int32(9)}), // absent: nothing to do
	))
	d.wantRows(`SELECT warehouse, sku, qty FROM inv ORDER BY 1, 2`, "1|a|5", "1|b|70")
}

// TestValueTypes writes every kind of value both ways: as upserts, and by COPY (created rows).
func TestValueTypes(t *testing.T) {
	for _, viaCopy := range []bool{false, true} {
		t.Run(fmt.Sprintf("copy=%v", viaCopy), func(t *testing.T) { testValueTypes(t, viaCopy) })
	}
}

func testValueTypes(t *testing.T, viaCopy bool) {
	d := newDB(t, nil)
	d.exec(`CREATE TYPE mood AS ENUM ('sad', 'happy')`)
	d.exec(`CREATE DOMAIN posint AS int CHECK (VALUE > 0)`)
	d.exec(`CREATE TABLE types (
		id int PRIMARY KEY,
		c_smallint smallint, c_int int, c_bigint bigint, c_numeric numeric, c_num_scaled numeric(12,4),
		c_float8 float8, c_real real, c_bool bool, c_text text, c_varchar varchar(10), c_bytea bytea,
		c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz, c_interval interval,
		c_uuid uuid, c_json json, c_jsonb jsonb, c_intarr int[], c_textarr text[], c_tsarr timestamptz[],
		c_jsonbarr jsonb[], c_byteaarr bytea[], c_enum mood, c_domain posint, c_inet inet)`)
	c := d.open(map[string]any{"table": "types"}, "id")

	ts := time.Date(2024, 5, 1, 10, 11, 12, 123456789, time.UTC)
	cases := []struct {
		col  string
		v    any
		want string // col::text
	}{
		{"c_smallint", int32(-5), "-5"},
		{"c_int", int32(42), "42"},
		{"c_int", int64(-7), "-7"},
		{"c_int", 3, "3"},
		{"c_int", float64(1e6), "1000000"}, // computed by an expression
		{"c_bigint", int64(9007199254740993), "9007199254740993"},
		{"c_numeric", "12345678901234567890.123456789012345", "12345678901234567890.123456789012345"},
		{"c_numeric", "-0.000000000000000001", "-0.000000000000000001"},
		{"c_numeric", "NaN", "NaN"},
		{"c_numeric", float64(2.5), "2.5"},
		{"c_num_scaled", "1.23456", "1.2346"},
		{"c_float8", float64(0.1), "0.1"},
		{"c_float8", float32(1.5), "1.5"},
		{"c_float8", float64(1e300), "1e+300"},
		{"c_real", float32(0.25), "0.25"},
		{"c_bool", true, "true"},
		{"c_bool", false, "false"},
		{"c_text", "héllo, \"wörld\"\n\\ {x} 'q' NULL", "héllo, \"wörld\"\n\\ {x} 'q' NULL"},
		{"c_text", nil, "<NULL>"},
		{"c_text", "", ""},
		{"c_varchar", "abc", "abc"},
		{"c_bytea", []byte{0, 1, 0xfe, 0xff, '\\'}, `\x0001feff5c`},
		{"c_bytea", []byte{}, `\x`},
		{"c_date", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "2024-02-29"},
		{"c_date", time.Date(-43, 3, 15, 0, 0, 0, 0, time.UTC), "0044-03-15 BC"},
		// PostgreSQL's infinities, as the mapping reads them from Debezium's extremes
		{"c_date", time.Unix(math.MaxInt32*86400, 0).UTC(), "infinity"},
		{"c_date", time.Unix(math.MinInt32*86400, 0).UTC(), "-infinity"},
		{"c_ts", time.UnixMicro(math.MaxInt64).UTC(), "infinity"},
		{"c_ts", time.UnixMicro(math.MinInt64).UTC(), "-infinity"},
		{"c_tstz", time.UnixMicro(math.MaxInt64).UTC(), "infinity"},
		{"c_tstz", "-infinity", "-infinity"},
		{"c_date", time.UnixMicro(math.MaxInt64 - 1).UTC(), "294247-01-10"}, // finite: spelled out
		{"c_ts", ts, "2024-05-01 10:11:12.123456"},
		{"c_tstz", ts, "2024-05-01 10:11:12.123456+00"},
		{"c_tstz", time.Date(2024, 5, 1, 12, 0, 0, 1000, time.FixedZone("CEST", 2*3600)), "2024-05-01 10:00:00.000001+00"},
		{"c_tstz", time.Date(12000, 1, 2, 3, 4, 5, 0, time.UTC), "12000-01-02 03:04:05+00"},
		{"c_tstz", "2024-05-01T10:00:00.000001Z", "2024-05-01 10:00:00.000001+00"},
		{"c_time", "15:04:05.123456", "15:04:05.123456"},
		{"c_time", ts, "10:11:12.123456"},
		{"c_timetz", "15:04:05+02", "15:04:05+02"},
		{"c_interval", "P1Y2M3DT4H5M6.5S", "1 year 2 mons 3 days 04:05:06.5"},
		{"c_interval", "PT-0.000001S", "-00:00:00.000001"},
		{"c_interval", "P-1DT3H", "-1 days +03:00:00"},
		{"c_interval", 90 * time.Minute, "01:30:00"},
		{"c_uuid", "6f1c2a0e-8d6b-4c1e-9a43-0c2b1d9e7f10", "6f1c2a0e-8d6b-4c1e-9a43-0c2b1d9e7f10"},
		{"c_json", `{"b": 1,  "a": [1, 2]}`, `{"b": 1,  "a": [1, 2]}`},
		{"c_jsonb", `{"b": 1, "a": [1, 2]}`, `{"a": [1, 2], "b": 1}`},
		{"c_jsonb", map[string]any{"x": []any{1.0, "y<&>"}, "z": nil}, `{"x": [1, "y<&>"], "z": null}`},
		{"c_jsonb", []any{int64(1), "two", true}, `[1, "two", true]`},
		{"c_jsonb", float64(3.5), "3.5"},
		{"c_jsonb", true, "true"},
		{"c_json", map[string]any{"a": "<b>"}, `{"a":"<b>"}`},
		{"c_intarr", []any{int32(1), nil, int32(3)}, "{1,NULL,3}"},
		{"c_intarr", []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}, "{{1,2},{3,4}}"},
		{"c_intarr", []any{}, "{}"},
		{"c_intarr", []int64{5, 6}, "{5,6}"},
		{"c_textarr", []any{"a,b", `q"uote`, nil, "NULL", "", `back\slash`, "{brace}", " sp ", "é"},
			`{"a,b","q\"uote",NULL,"NULL","","back\\slash","{brace}"," sp ",é}`},
		{"c_textarr", []string{"x", "y z"}, `{x,"y z"}`},
		{"c_tsarr", []any{ts, nil}, `{"2024-05-01 10:11:12.123456+00",NULL}`},
		{"c_jsonbarr", []any{map[string]any{"k": "v,\"w\""}, []any{1.0}, nil}, `{"{\"k\": \"v,\\\"w\\\"\"}",[1],NULL}`},
		{"c_byteaarr", []any{[]byte{1, 2}, nil}, `{"\\x0102",NULL}`},
		{"c_enum", "happy", "happy"},
		{"c_domain", int32(5), "5"},
		{"c_inet", "10.1.2.3/24", "10.1.2.3/24"},
	}
	var recs []sink.Record
	for i, tc := range cases {
		fields := map[string]any{"id": int32(i), tc.col: tc.v}
		for _, other := range cases {
			if _, ok := fields[other.col]; !ok && viaCopy {
				fields[other.col] = nil // one field set: the batch is one COPY
			}
		}
		recs = append(recs, up(fields, "id"))
	}
	if viaCopy {
		recs = created(recs...)
	}
	apply(t, c, batch(int64(len(recs)), recs...))
	if n := c.copies.Load(); viaCopy != (n == 1) {
		t.Fatalf("%d batches went by COPY", n)
	}
	for i, tc := range cases {
		got := d.rows(fmt.Sprintf("SELECT %s::text FROM types WHERE id = $1", tc.col), i)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s = %#v: got %q, want %q", tc.col, tc.v, got, tc.want)
		}
	}
	// numeric stays exact: compare as numeric, not as text
	d.wantRows(`SELECT c_numeric = '12345678901234567890.123456789012345'::numeric FROM types WHERE id = 6`, "t")
}

func TestQuotedIdentifiers(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE SCHEMA "Sales Data"`)
	d.exec(`CREATE TABLE "Sales Data"."Stock Levels" ("SKU Code" text, "Warehouse" int, "Qty On Hand" int, "select" text,
		PRIMARY KEY ("SKU Code", "Warehouse"))`)
	c := d.open(map[string]any{"table": "Sales Data.Stock Levels"}, "SKU Code", "Warehouse")
	apply(t, c, batch(2,
		up(map[string]any{"SKU Code": "A-1", "Warehouse": int32(1), "Qty On Hand": int32(5), "select": "x"}, "SKU Code", "Warehouse"),
		up(map[string]any{"SKU Code": `B "2"`, "Warehouse": int32(1), "Qty On Hand": int32(6), "select": "y"}, "SKU Code", "Warehouse"),
	))
	apply(t, c, batch(4,
		up(map[string]any{"SKU Code": "A-1", "Warehouse": int32(1), "Qty On Hand": int32(50), "select": "z"}, "SKU Code", "Warehouse"),
		del(map[string]any{"SKU Code": `B "2"`, "Warehouse": int32(1)}),
	))
	d.wantRows(`SELECT "SKU Code", "Qty On Hand", "select" FROM "Sales Data"."Stock Levels"`, "A-1|50|z")
	d.wantRows(`SELECT next_offset FROM "Sales Data".backflow_offsets WHERE "partition" >= 0`, "4")

	// the double-quoted form holds dots
	d.exec(`CREATE TABLE "Sales Data"."v1.2" (id int PRIMARY KEY)`)
	c2 := d.open(map[string]any{"table": `"Sales Data"."v1.2"`, "offsets_table": "offs"}, "id")
	apply(t, c2, batch(1, up(map[string]any{"id": int32(1)}, "id")))
	d.wantRows(`SELECT id FROM "Sales Data"."v1.2"`, "1")
	d.wantRows(`SELECT next_offset FROM "Sales Data".offs WHERE "partition" >= 0`, "1")
}

func TestAllKeyTable(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE tags (item int, tag text, PRIMARY KEY (item, tag))`)
	c := d.open(map[string]any{"table": "tags"}, "item", "tag")
	b := batch(3,
		up(map[string]any{"item": int32(1), "tag": "red"}, "item", "tag"),
		up(map[string]any{"item": int32(1), "tag": "big"}, "item", "tag"),
	)
	apply(t, c, b)
	apply(t, c, b)
	apply(t, c, batch(5, up(map[string]any{"item": int32(1), "tag": "red"}, "item", "tag"),
		del(map[string]any{"item": int32(1), "tag": "big"})))
	d.wantRows(`SELECT item, tag FROM tags`, "1|red")

	// a key-only upsert on a table with other columns does nothing to them either
	d.exec(`CREATE TABLE kv (k int PRIMARY KEY, v text)`)
	d.exec(`INSERT INTO kv VALUES (1, 'keep')`)
	c2 := d.open(map[string]any{"table": "kv", "offsets_table": "offs2"}, "k")
	apply(t, c2, batch(1, up(map[string]any{"k": int32(1)}, "k"), up(map[string]any{"k": int32(2)}, "k")))
	d.wantRows(`SELECT k, v FROM kv ORDER BY k`, "1|keep", "2|<NULL>")
}

func TestOffsetsStoredAtomically(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, qty int CHECK (qty >= 0))`)
	d.exec(`CREATE TABLE parent (id int PRIMARY KEY)`)
	d.exec(`ALTER TABLE t ADD COLUMN parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED`)
	c := d.open(map[string]any{"table": "t"}, "id")
	apply(t, c, batch(100, up(map[string]any{"id": int32(1), "qty": int32(1)}, "id")))

	offs, err := c.Offsets(context.Background(), "test", []string{"wh.public.src", "other"})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 1 || offs["wh.public.src"][0] != 100 {
		t.Fatalf("Offsets = %v, want wh.public.src/0 = 100", offs)
	}

	failing := []*sink.Batch{
		// the second statement (the upserts, after the deletes) fails on its second row
		batch(200, del(map[string]any{"id": int32(1)}),
			up(map[string]any{"id": int32(2), "qty": int32(2)}, "id"),
			up(map[string]any{"id": int32(3), "qty": int32(-1)}, "id")),
		// fails at commit: a deferred foreign key
		batch(300, del(map[string]any{"id": int32(1)}),
			up(map[string]any{"id": int32(4), "qty": int32(4), "parent": int32(99)}, "id")),
	}
	for i, b := range failing {
		err := c.Apply(context.Background(), b)
		if err == nil {
			t.Fatalf("batch %d: Apply succeeded", i)
		}
		if sink.IsRetryable(err) {
			t.Fatalf("batch %d: %v is retryable", i, err)
		}
		t.Logf("batch %d: %v", i, err)
		d.wantRows(`SELECT id, qty FROM t ORDER BY id`, "1|1")
		d.wantRows(`SELECT partition, next_offset FROM backflow_offsets WHERE "partition" >= 0`, "0|100")
	}
	// other partitions and sinks have their own offsets
	b := batch(7)
	b.Partition = 3
	apply(t, c, b)
	b = batch(9)
	b.Sink = "other-sink"
	apply(t, c, b)
	offs, err = c.Offsets(context.Background(), "test", []string{"wh.public.src"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 100, 3: 7}; fmt.Sprint(offs["wh.public.src"]) != fmt.Sprint(want) {
		t.Fatalf("Offsets = %v, want %v", offs, want)
	}
}

func TestRetryableWhenServerStops(t *testing.T) {
	pg := testenv.NewPostgres(t)
	d := newDB(t, pg)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	c := d.open(map[string]any{"table": "t"}, "id")
	apply(t, c, batch(1, up(map[string]any{"id": int32(1), "v": "a"}, "id")))
	d.conn.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the pooled connection's failure, then a failing dial
		err := c.Apply(ctx, batch(2, up(map[string]any{"id": int32(2), "v": "b"}, "id")))
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("Apply %d while stopped: %v; want a retryable error", i, err)
		}
		t.Logf("Apply %d while stopped: %v", i, err)
	}
	// created rows try COPY first; its failure leads to the upsert's retryable error
	if err := c.Apply(ctx, batch(2, created(up(map[string]any{"id": int32(2), "v": "b"}, "id"))...)); err == nil || !sink.IsRetryable(err) {
		t.Fatalf("Apply of created rows while stopped: %v; want a retryable error", err)
	}
	if c.copyFallbacks.Load() != 1 {
		t.Fatalf("COPY fallbacks = %d, want 1", c.copyFallbacks.Load())
	}
	if _, err := c.Offsets(ctx, "test", []string{"wh.public.src"}); err == nil || !sink.IsRetryable(err) {
		t.Fatalf("Offsets while stopped: %v; want a retryable error", err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	apply(t, c, batch(2, up(map[string]any{"id": int32(2), "v": "b"}, "id")))
	d2, err := pg.Connect(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close(ctx)
	var n, next int64
	if err := d2.QueryRow(ctx, `SELECT (SELECT count(*) FROM t), (SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0)`).Scan(&n, &next); err != nil {
		t.Fatal(err)
	}
	if n != 2 || next != 2 {
		t.Fatalf("after restart: %d rows, next offset %d; want 2, 2", n, next)
	}

	// a server that refuses connections at startup is retryable too
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, sink.Params{Sink: "test", Key: []string{"id"}, With: map[string]any{"url": d.url, "table": "t"}})
	if err == nil || !sink.IsRetryable(err) {
		t.Fatalf("New while stopped: %v; want a retryable error", err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBadValuesAreNotRetryable(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, qty int, name text NOT NULL DEFAULT 'x',
		price numeric(5,2), code varchar(3), CONSTRAINT qty_nonneg CHECK (qty >= 0), email text UNIQUE)`)
	d.exec(`INSERT INTO t (id, email) VALUES (100, 'taken@example.com')`)
	c := d.open(map[string]any{"table": "t"}, "id")
	cases := []struct {
		name   string
		fields map[string]any
		want   []string
	}{
		{"text into int", map[string]any{"qty": "abc"}, []string{`column "qty"`, `"abc"`, "integer", "22P02", "public.t"}},
		{"not null", map[string]any{"name": nil}, []string{`column "name"`, "23502", "not-null"}},
		{"check", map[string]any{"qty": int32(-1)}, []string{`constraint "qty_nonneg"`, "23514", "check constraint"}},
		{"numeric overflow", map[string]any{"price": "12345.678"}, []string{`column "price"`, "22003"}},
		{"too long", map[string]any{"code": "abcd"}, []string{"character varying(3)", "22001", `column "code"`}},
		{"unique", map[string]any{"email": "taken@example.com"}, []string{"23505", `constraint "t_email_key"`, "taken@example.com"}},
		{"bad json value", map[string]any{"qty": map[string]any{"f": func() {}}}, []string{`column "qty"`, "JSON"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fields["id"] = int32(i)
			rec := up(tc.fields, "id")
			err := c.Apply(context.Background(), batch(int64(i+1), rec))
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			// created rows try COPY first, then report the upsert's error
			viaCopy := d.open(map[string]any{"table": "t"}, "id")
			copyErr := viaCopy.Apply(context.Background(), batch(int64(i+1), created(rec)...))
			if copyErr == nil || copyErr.Error() != err.Error() || sink.IsRetryable(copyErr) != sink.IsRetryable(err) {
				t.Errorf("via COPY: %v; want the upsert's error %v", copyErr, err)
			}
			if sink.IsRetryable(err) {
				t.Fatalf("retryable: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			t.Log(err)
		})
	}
	d.wantRows(`SELECT count(*) FROM t`, "1")
}

func TestUnknownFieldWaitsForTheTable(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, a text)`)
	c := d.open(map[string]any{"table": "t"}, "id")
	b := batch(1, up(map[string]any{"id": int32(1), "a": "x", "b": "y"}, "id"))
	err := c.Apply(context.Background(), b)
	if err == nil || !sink.IsRetryable(err) || !strings.Contains(err.Error(), "b") {
		t.Fatalf("Apply with an unknown field: %v; want a retryable error naming it", err)
	}
	d.exec(`ALTER TABLE t ADD COLUMN b text`) // the operator fixes the target
	apply(t, c, b)
	d.wantRows(`SELECT id, a, b FROM t`, "1|x|y")

	// a column dropped under the connector: retryable, and the catalog is read again
	d.exec(`ALTER TABLE t DROP COLUMN a`)
	err = c.Apply(context.Background(), batch(2, up(map[string]any{"id": int32(2), "b": "z"}, "id")))
	if err != nil {
		t.Fatalf("Apply after DROP COLUMN of an unused column: %v", err)
	}
	err = c.Apply(context.Background(), b)
	if err == nil || !sink.IsRetryable(err) {
		t.Fatalf("Apply of a dropped column: %v; want retryable", err)
	}
}

func TestAutoCreate(t *testing.T) {
	d := newDB(t, nil)
	c := d.open(map[string]any{"table": "shop.items", "auto_create": true}, "sku", "store")

	// deletes before the table exists have nothing to do, and the offset is still stored
	apply(t, c, batch(1, del(map[string]any{"sku": "x", "store": int32(1)})))
	d.wantRows(`SELECT to_regclass('shop.items') IS NULL, next_offset FROM shop.backflow_offsets WHERE "partition" >= 0`, "t|1")

	src := &change.Table{Schema: "public", Name: "items", Columns: []change.Column{
		{Name: "sku", Kind: change.KindString, PGType: "text", Key: true},
		{Name: "price", Kind: change.KindNumeric, PGType: "numeric"},
		{Name: "seen", Kind: change.KindTimestampTZ, PGType: "timestamptz"},
		{Name: "id", Kind: change.KindUUID, PGType: "uuid"},
		{Name: "day", Kind: change.KindDate, PGType: "date"},
		{Name: "qty_min", Kind: change.KindInt16, PGType: "int2"},
		{Name: "paid", Kind: change.KindBool, PGType: "bool"},
	}}
	r1 := up(map[string]any{"sku": "a", "store": int32(1), "price": "1.50", "seen": time.Unix(0, 0).UTC(),
		"id": "6f1c2a0e-8d6b-4c1e-9a43-0c2b1d9e7f10", "day": nil, "qty": int64(3), "ok": true, "tags": []any{"x"},
		"attrs": map[string]any{"k": 1.0}, "raw": []byte{1}, "ratio": 0.5, "nothing": nil, "qty_min": nil, "paid": nil}, "sku", "store")
	r1.Event = &change.Event{Op: change.OpCreate, Table: src}
	r2 := up(map[string]any{"sku": "b", "store": int32(1), "day": time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), "paid": nil}, "sku", "store")
	r2.Event = &change.Event{Op: change.OpCreate, Table: src}
	apply(t, c, batch(3, r1, r2))
	d.wantRows(`SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = 'shop.items'::regclass AND a.attnum > 0 ORDER BY a.attname`,
		"attrs|jsonb", "day|date", "id|uuid", "nothing|text", "ok|boolean", "paid|boolean", "price|numeric", "qty|bigint",
		"qty_min|smallint", "ratio|double precision", "raw|bytea", "seen|timestamp with time zone", "sku|text", "store|integer", "tags|text[]")
	d.wantRows(`SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'shop.items'::regclass AND contype = 'p'`,
		"PRIMARY KEY (sku, store)")
	d.wantRows(`SELECT sku, price, qty, tags, day FROM shop.items ORDER BY sku`, "a|1.50|3|{x}|<NULL>", "b|<NULL>|<NULL>|<NULL>|2024-01-02")

	// a new field later adds a column
	apply(t, c, batch(4, up(map[string]any{"sku": "a", "store": int32(1), "color": "red", "weight": float32(1.5)}, "sku", "store")))
	d.wantRows(`SELECT sku, color, weight, price FROM shop.items ORDER BY sku`, "a|red|1.5|1.50", "b|<NULL>|<NULL>|<NULL>")

	// a second connector finds the table
	c2 := d.open(map[string]any{"table": "shop.items", "auto_create": "true"}, "sku", "store")
	apply(t, c2, batch(5, del(map[string]any{"sku": "b", "store": int32(1)})))
	d.wantRows(`SELECT count(*) FROM shop.items`, "1")
}

func TestSoftDelete(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text, deleted_at timestamptz)`)
	d.exec(`CREATE TABLE b (id int PRIMARY KEY, v text, deleted bool NOT NULL DEFAULT false)`)
	c, err := New(context.Background(), sink.Params{Sink: "test", Key: []string{"id"}, SoftDeleteColumn: "deleted_at",
		With: map[string]any{"url": d.url, "table": "t", "soft_delete_column": "deleted_at"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	when := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	gone := del(map[string]any{"id": int32(2)})
	gone.Event = &change.Event{Op: change.OpDelete, Source: change.Source{TsMs: when.UnixMilli()}}
	// the runtime's form of a soft delete: an upsert of the key and the column set to true
	gone3 := up(map[string]any{"id": int32(3), "deleted_at": true}, "id")
	gone3.Event = gone.Event
	for _, b := range []*sink.Batch{
		batch(3, up(map[string]any{"id": int32(1), "v": "a"}, "id"), up(map[string]any{"id": int32(2), "v": "b"}, "id"),
			up(map[string]any{"id": int32(3), "v": "c"}, "id")),
		batch(5, gone, gone3),
	} {
		if err := c.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	d.wantRows(`SELECT id, v, deleted_at FROM t ORDER BY id`, "1|a|<NULL>", "2|b|2024-06-01 12:00:00+00", "3|c|2024-06-01 12:00:00+00")
	// a row inserted again is alive again
	if err := c.Apply(context.Background(), batch(6, up(map[string]any{"id": int32(2), "v": "b2"}, "id"))); err != nil {
		t.Fatal(err)
	}
	d.wantRows(`SELECT id, v, deleted_at FROM t ORDER BY id`, "1|a|<NULL>", "2|b2|<NULL>", "3|c|2024-06-01 12:00:00+00")

	cb, err := New(context.Background(), sink.Params{Sink: "test", Key: []string{"id"}, SoftDeleteColumn: "deleted",
		With: map[string]any{"url": d.url, "table": "b", "soft_delete_column": "deleted", "offsets_table": "offs_b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	for _, b := range []*sink.Batch{
		batch(2, up(map[string]any{"id": int32(1), "v": "a"}, "id"), up(map[string]any{"id": int32(2), "v": "b"}, "id")),
		batch(3, del(map[string]any{"id": int32(1)})),
		batch(4, truncate()),
	} {
		if err := cb.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	d.wantRows(`SELECT id, v, deleted FROM b ORDER BY id`, "1|a|t", "2|b|t")
}

func TestConfigValidation(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, a text, b text, g int GENERATED ALWAYS AS (id * 2) STORED)`)
	d.exec(`CREATE TABLE nokey (id int, a text)`)
	d.exec(`CREATE TABLE partial (id int, a text)`)
	d.exec(`CREATE UNIQUE INDEX ON partial (id) WHERE a IS NOT NULL`)
	d.exec(`CREATE TABLE deferred (id int UNIQUE DEFERRABLE, a text)`)
	d.exec(`CREATE TABLE wide (a int, b int, c int, PRIMARY KEY (a, b))`)
	d.exec(`CREATE VIEW v AS SELECT * FROM t`)
	d.exec(`CREATE TABLE badoffs (sink text)`)
	secret := "s3cr3t-pw"
	cases := []struct {
		name string
		with map[string]any
		key  []string
		soft string
		want []string
	}{
		{"no url", map[string]any{"url": nil, "table": "t"}, []string{"id"}, "", []string{"with.url: required"}},
		{"url not a string", map[string]any{"url": 5, "table": "t"}, []string{"id"}, "", []string{"with.url: expected a string"}},
		{"no table", map[string]any{}, []string{"id"}, "", []string{"with.table: required"}},
		{"bad table", map[string]any{"table": "a.b.c"}, []string{"id"}, "", []string{"with.table: invalid table"}},
		{"unknown keys", map[string]any{"table": "t", "tabel": "t", "batch": 1}, []string{"id"}, "", []string{"with.batch: unknown setting", "with.tabel: unknown setting; did you mean table?"}},
		{"auto_create type", map[string]any{"table": "t", "auto_create": "maybe"}, []string{"id"}, "", []string{"with.auto_create: expected true or false"}},
		{"copy_inserts type", map[string]any{"table": "t", "copy_inserts": 1}, []string{"id"}, "", []string{"with.copy_inserts: expected true or false"}},
		{"max_conns zero", map[string]any{"table": "t", "max_conns": 0}, []string{"id"}, "", []string{"with.max_conns: 0 is not a positive integer"}},
		{"max_conns type", map[string]any{"table": "t", "max_conns": "many"}, []string{"id"}, "", []string{"with.max_conns: many is not an integer"}},
		{"no key", map[string]any{"table": "t"}, nil, "", []string{"key: required"}},
		{"duplicate key", map[string]any{"table": "t"}, []string{"id", "id"}, "", []string{"key[1]: field \"id\" is listed twice"}},
		{"missing table", map[string]any{"table": "nope"}, []string{"id"}, "", []string{"with.table: table public.nope does not exist", "auto_create"}},
		{"not a table", map[string]any{"table": "v"}, []string{"id"}, "", []string{"with.table: public.v is not a table"}},
		{"key not a column", map[string]any{"table": "t"}, []string{"id", "zz"}, "", []string{`key[1]: field "zz" is not a column of table public.t`}},
		{"generated key", map[string]any{"table": "t"}, []string{"g"}, "", []string{`key[0]: column "g"`, "generated"}},
		{"no unique on key", map[string]any{"table": "nokey"}, []string{"id"}, "", []string{"key: table public.nokey has no primary key or unique constraint", "ON CONFLICT"}},
		{"partial unique", map[string]any{"table": "partial"}, []string{"id"}, "", []string{"key: table public.partial has no primary key"}},
		{"deferrable unique", map[string]any{"table": "deferred"}, []string{"id"}, "", []string{"key: table public.deferred has no primary key"}},
		{"key is part of the pk", map[string]any{"table": "wide"}, []string{"a"}, "", []string{"key: table public.wide has no primary key"}},
		{"key wider than the pk", map[string]any{"table": "wide"}, []string{"a", "b", "c"}, "", []string{"key: table public.wide has no primary key"}},
		{"soft delete column missing", map[string]any{"table": "t", "soft_delete_column": "gone"}, []string{"id"}, "gone", []string{"with.soft_delete_column: \"gone\" is not a column"}},
		{"soft delete column type", map[string]any{"table": "t", "soft_delete_column": "a"}, []string{"id"}, "a", []string{"with.soft_delete_column: column \"a\"", "expected boolean"}},
		{"offsets table shape", map[string]any{"table": "t", "offsets_table": "badoffs"}, []string{"id"}, "", []string{"with.offsets_table: table public.badoffs exists but has no column \"topic\""}},
		{"offsets table is the table", map[string]any{"table": "t", "offsets_table": "public.t"}, []string{"id"}, "", []string{"with.offsets_table: must differ"}},
		{"bad url", map[string]any{"url": "postgres://u:" + secret + "@127.0.0.1:notaport/db", "table": "t"}, []string{"id"}, "", []string{"with.url: invalid connection string", "xxxxx"}},
		{"bad sslmode", map[string]any{"url": "postgres://u:" + secret + "@127.0.0.1/db?sslmode=bogus", "table": "t"}, []string{"id"}, "", []string{"with.url", "sslmode"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			with := tc.with
			if _, ok := with["url"]; !ok {
				with["url"] = d.url
			}
			if with["url"] == nil {
				delete(with, "url")
			}
			c, err := New(context.Background(), sink.Params{Sink: "test", With: with, Key: tc.key, SoftDeleteColumn: tc.soft})
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
			if sink.IsRetryable(err) {
				t.Errorf("configuration error %q is retryable", err)
			}
		})
	}
	// sslmode is honoured: the test server has no TLS
	_, err := New(context.Background(), sink.Params{Sink: "test", Key: []string{"id"},
		With: map[string]any{"url": strings.Replace(d.url, "sslmode=disable", "sslmode=require", 1), "table": "t"}})
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("sslmode=require against a server without TLS: %v", err)
	}
	// max_conns as YAML numbers of several types
	for _, n := range []any{2, int64(2), uint64(2), 2.0, "2"} {
		c := d.open(map[string]any{"table": "t", "max_conns": n}, "id")
		if got := c.pool.Config().MaxConns; got != 2 {
			t.Errorf("max_conns %T: pool size %d", n, got)
		}
	}
}

func TestTableNameParsing(t *testing.T) {
	cases := []struct{ in, schema, name, err string }{
		{"t", "", "t", ""},
		{"s.t", "s", "t", ""},
		{"Sales Data.Stock Levels", "Sales Data", "Stock Levels", ""},
		{`"a.b"."c.d"`, "a.b", "c.d", ""},
		{`"q""x".t`, `q"x`, "t", ""},
		{`s."t"`, "s", "t", ""},
		{"a.b.c", "", "", "invalid table"},
		{".t", "", "", "invalid table"},
		{"s.", "", "", "invalid table"},
		{`"open`, "", "", "unterminated"},
		{`"a"b`, "", "", "invalid table"},
	}
	for _, tc := range cases {
		s, n, err := parseTableName(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || s != tc.schema || n != tc.name {
			t.Errorf("%q: (%q, %q, %v), want (%q, %q)", tc.in, s, n, err, tc.schema, tc.name)
		}
	}
}

func TestConcurrentPartitions(t *testing.T) {
	d := newDB(t, nil)
	c := d.open(map[string]any{"table": "t", "auto_create": true, "max_conns": 3}, "id")
	errs := make(chan error, 8)
	for p := range 8 {
		go func() {
			var recs []sink.Record
			for i := range 100 {
				recs = append(recs, up(map[string]any{"id": int64(p*1000 + i), "v": fmt.Sprint(p)}, "id"))
			}
			b := batch(100, recs...)
			b.Partition = int32(p)
			errs <- c.Apply(context.Background(), b)
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	d.wantRows(`SELECT count(*), count(DISTINCT v) FROM t`, "800|8")
	d.wantRows(`SELECT count(*), sum(next_offset) FROM backflow_offsets WHERE "partition" >= 0`, "8|800")
}

func TestNoPasswordInErrors(t *testing.T) {
	url := "postgres://writer:wr0ng-pw@127.0.0.1:1/db?password=other-pw&sslmode=disable"
	_, err := New(context.Background(), sink.Params{Sink: "test", Key: []string{"id"}, With: map[string]any{"url": url, "table": "t"}})
	if err == nil {
		t.Fatal("New succeeded without a server")
	}
	if strings.Contains(err.Error(), "wr0ng-pw") || strings.Contains(err.Error(), "other-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	if !sink.IsRetryable(err) {
		t.Fatalf("connection refused is not retryable: %v", err)
	}
	t.Log(err)
}

// created marks records as rows the source created, which makes their batch try COPY.
func created(recs ...sink.Record) []sink.Record {
	for i := range recs {
		recs[i].Event = &change.Event{Op: change.OpCreate}
	}
	return recs
}

// TestCopyInserts: a batch of created rows goes by COPY, with the offset in the same
// transaction and every character that COPY's text format escapes intact; the same records
// again (a replay) make COPY fail on the keys, and the batch is applied as upserts instead;
// after that failure the next batch skips COPY, and the one after tries it again.
func TestCopyInserts(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(6,2), at timestamptz, tags text[])`)
	c := d.open(map[string]any{"table": "t"}, "id")
	row := func(id int32, v string, n any) sink.Record {
		return up(map[string]any{"id": id, "v": v, "n": n, "at": time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
			"tags": []any{"a\tb", `c\d`, nil}}, "id")
	}
	counts := func(copies, fallbacks int64) {
		t.Helper()
		if got, fb := c.copies.Load(), c.copyFallbacks.Load(); got != copies || fb != fallbacks {
			t.Fatalf("COPY batches = %d, fallbacks = %d; want %d, %d", got, fb, copies, fallbacks)
		}
	}
	tricky := "tab\there\nnewline\r\\N back\\slash \\. é"
	apply(t, c, batch(2, created(row(1, tricky, "1.5"), row(2, `\N`, nil))...))
	counts(1, 0)
	got := d.rows(`SELECT id, v = $1, n, at, tags FROM t ORDER BY id`, tricky)
	want := []string{`1|t|1.50|2025-01-02 03:04:05.000006+00|{"a	b","c\\d",NULL}`,
		`2|f|<NULL>|2025-01-02 03:04:05.000006+00|{"a	b","c\\d",NULL}`}
	if !slices.Equal(got, want) {
		t.Fatalf("rows = %q, want %q", got, want)
	}
	d.wantRows(`SELECT v FROM t WHERE id = 2`, `\N`)
	d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "2")

	// the same keys again, as after a crash: COPY fails, the upsert writes the new values
	apply(t, c, batch(4, created(row(1, "again", "2"), row(3, "new", "3"))...))
	counts(1, 1)
	d.wantRows(`SELECT id, v, n FROM t ORDER BY id`, "1|again|2.00", "2|\\N|<NULL>", "3|new|3.00")
	d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "4")

	apply(t, c, batch(5, created(row(4, "skipped COPY", "4"))...)) // paused after the failure
	counts(1, 1)
	apply(t, c, batch(6, created(row(5, "COPY again", "5"))...))
	counts(2, 1)
	// updates and mixed batches never try COPY
	apply(t, c, batch(8, row(6, "update", "6"), row(7, "update", "7")))
	apply(t, c, batch(9, append(created(row(8, "c", "8")), del(map[string]any{"id": int32(6)}))...))
	counts(2, 1)
	d.wantRows(`SELECT id, v FROM t WHERE id >= 4 ORDER BY id`, "4|skipped COPY", "5|COPY again", "7|update", "8|c")
	d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "9")

	off := d.open(map[string]any{"table": "t", "copy_inserts": false}, "id")
	apply(t, off, batch(10, created(row(9, "no COPY", "9"))...))
	if off.copies.Load() != 0 || off.copyFallbacks.Load() != 0 {
		t.Fatalf("copy_inserts: false still tried COPY")
	}
	d.wantRows(`SELECT v FROM t WHERE id = 9`, "no COPY")
}

func TestCopyGate(t *testing.T) {
	var g copyGate
	var tried []bool
	for i := range 24 {
		ok := g.allow()
		tried = append(tried, ok)
		switch {
		case ok && (i < 12 || i == 20):
			g.failed()
		case ok:
			g.succeeded()
		}
	}
	// failures at tries 0, 2, 5 and 10 pause 1, 2, 4 and 8 batches; the success at 19 ends the
	// streak, so the failure at 20 pauses 1 batch only
	F, T := false, true
	want := []bool{T, F, T, F, F, T, F, F, F, F, T, F, F, F, F, F, F, F, F, T, T, F, T, T}
	if !slices.Equal(tried, want) {
		t.Fatalf("tried = %v, want %v", tried, want)
	}
	g = copyGate{pause: 600}
	g.failed()
	if g.skip != maxCopyPause {
		t.Fatalf("pause after a long streak = %d, want %d", g.skip, maxCopyPause)
	}
}

// TestReadOnlyTargetReconnects: after a failover, connections made to the old primary stay on it
// as a standby, read-only. The failed batch is retryable, and its retry connects afresh (to the
// new primary) instead of failing on the same connections for as long as the pool keeps them.
func TestReadOnlyTargetReconnects(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	apply(t, d.open(map[string]any{"table": "t"}, "id"), batch(1, up(map[string]any{"id": int32(1), "v": "a"}, "id")))
	db := pgx.Identifier{d.name}.Sanitize()
	d.exec("ALTER DATABASE " + db + " SET default_transaction_read_only = on")
	c := d.open(map[string]any{"table": "t"}, "id") // connected to "the standby"
	d.exec("ALTER DATABASE " + db + " RESET default_transaction_read_only")
	b := batch(2, up(map[string]any{"id": int32(2), "v": "b"}, "id"))
	if err := c.Apply(context.Background(), b); err == nil || !sink.IsRetryable(err) {
		t.Fatalf("Apply on a read-only connection: %v; want a retryable error", err)
	}
	if err := c.Apply(context.Background(), b); err != nil {
		t.Fatalf("retry after the failover: %v", err)
	}
	d.wantRows(`SELECT id, v FROM t ORDER BY id`, "1|a", "2|b")
}
