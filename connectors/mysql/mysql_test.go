package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// The tests run against a throwaway MariaDB server on loopback started from the installed
// binaries (pkg/testenv); MYSQL_TEST_DSN names another server instead (a DSN without a database).
// Each run works in its own database, dropped at the end.
var (
	serverDSN string
	testDB    string
	admin     *sql.DB
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests starts the server unless MYSQL_TEST_DSN names one, and stops it after the tests.
func runTests(m *testing.M) int {
	serverDSN = os.Getenv("MYSQL_TEST_DSN")
	if serverDSN == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		server, err := testenv.StartMariaDB(ctx)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv: start MariaDB:", err)
			return 1
		}
		defer func() {
			if err := server.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "testenv: close MariaDB:", err)
			}
		}()
		serverDSN = server.DSN("")
	}
	var err error
	admin, err = sql.Open("mysql", serverDSN+"?multiStatements=true")
	if err == nil {
		err = admin.Ping()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mysql tests need a MySQL/MariaDB server at %s: %v\n", serverDSN, err)
		return 1
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	testDB = "backflow_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + quoteIdent(testDB)); err != nil {
		fmt.Fprintf(os.Stderr, "create test database: %v\n", err)
		return 1
	}
	code := m.Run()
	if _, err := admin.Exec("DROP DATABASE " + quoteIdent(testDB)); err != nil {
		fmt.Fprintf(os.Stderr, "drop test database: %v\n", err)
	}
	admin.Close()
	return code
}

func dsn() string { return serverDSN + testDB }

// serverAddr is the test server's host:port.
func serverAddr(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Addr
}

func exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := admin.Exec("USE "+quoteIdent(testDB)+"; "+q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rows returns the result of q as text, one string per row, columns joined by "|".
func rows(t testing.TB, q string) []string {
	t.Helper()
	conn, err := admin.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "USE "+quoteIdent(testDB)); err != nil {
		t.Fatal(err)
	}
	rs, err := conn.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			if v.Valid {
				parts[i] = v.String
			} else {
				parts[i] = "NULL"
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantRows(t testing.TB, q string, want ...string) {
	t.Helper()
	got := rows(t, q)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got: %q\nwant: %q", q, got, want)
	}
}

// weakUser creates a user (name prefix, for the test's life) granted privileges on the test
// database only, and returns that user's DSN.
func weakUser(t testing.TB, prefix, privileges string) *mysql.Config {
	t.Helper()
	server, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		t.Fatal(err)
	}
	user := prefix + testDB[len(testDB)-6:]
	exec(t, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'")
	t.Cleanup(func() { exec(t, "DROP USER '"+user+"'@'%'") })
	exec(t, "GRANT "+privileges+" ON "+quoteIdent(testDB)+".* TO '"+user+"'@'%'")
	w := *server
	w.User, w.Passwd, w.DBName = user, "pw", testDB
	return &w
}

func newConn(t testing.TB, table string, key []string, with map[string]any) *Connector {
	t.Helper()
	w := map[string]any{"dsn": dsn(), "table": table}
	for k, v := range with {
		w[k] = v
	}
	c, err := New(context.Background(), sink.Params{Sink: "test-sink", With: w, Key: key})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	// Tests create tables of the same names again: a table row a test before stored would make
	// this one's first batch reset the offsets (identity.go).
	mc := c.(*Connector)
	if _, err := mc.db.Exec("DELETE FROM "+mc.offsets.quoted()+" WHERE `topic` = ?", mc.tableIdentity()); err != nil {
		t.Fatalf("forget the table row: %v", err)
	}
	return mc
}

// batch builds records: each op is "u", "d" or "t" followed by the fields (upsert), the key
// (delete) or nothing (truncate).
type rec struct {
	op     sink.Op
	fields map[string]any
}

func up(f map[string]any) rec  { return rec{sink.OpUpsert, f} }
func del(k map[string]any) rec { return rec{sink.OpDelete, k} }
func trunc() rec               { return rec{op: sink.OpTruncate} }

var offsetSeq int64 = 100

func mkBatch(topic string, key []string, recs ...rec) *sink.Batch {
	b := &sink.Batch{Sink: "test-sink", Topic: topic, Partition: 0}
	for _, r := range recs {
		offsetSeq++
		sr := sink.Record{Op: r.op, Topic: topic, Partition: 0, Offset: offsetSeq, KeyOrder: key}
		if r.op != sink.OpTruncate {
			sr.Key = map[string]any{}
			for _, k := range key {
				sr.Key[k] = r.fields[k]
			}
		}
		if r.op == sink.OpUpsert {
			sr.Fields = r.fields
			for k := range r.fields {
				sr.FieldOrder = append(sr.FieldOrder, k)
			}
		}
		b.Records = append(b.Records, sr)
	}
	offsetSeq++
	b.NextOffset = offsetSeq
	return b
}

func apply(t testing.TB, c *Connector, b *sink.Batch) {
	t.Helper()
	if err := c.Apply(context.Background(), b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func storedOffset(t testing.TB, c *Connector, topic string) (int64, bool) {
	t.Helper()
	offs, err := c.Offsets(context.Background(), "test-sink", []string{topic})
	if err != nil {
		t.Fatalf("Offsets: %v", err)
	}
	v, ok := offs[topic][0]
	return v, ok
}

func TestCompositeKeysAndDeletes(t *testing.T) {
	exec(t, "CREATE TABLE stock (sku VARCHAR(20) NOT NULL, warehouse INT NOT NULL, available INT, PRIMARY KEY (warehouse, sku))")
	key := []string{"sku", "warehouse"}
	c := newConn(t, "stock", key, nil)
	apply(t, c, mkBatch("wh.public.stock", key,
		up(map[string]any{"sku": "A", "warehouse": int64(1), "available": int64(5)}),
		up(map[string]any{"sku": "A", "warehouse": int64(2), "available": int64(6)}),
		up(map[string]any{"sku": "B", "warehouse": int64(1), "available": int64(7)}),
		up(map[string]any{"sku": "C", "warehouse": int64(1), "available": int64(8)}),
	))
	wantRows(t, "SELECT sku, warehouse, available FROM stock ORDER BY sku, warehouse", "A|1|5", "A|2|6", "B|1|7", "C|1|8")
	apply(t, c, mkBatch("wh.public.stock", key,
		del(map[string]any{"sku": "A", "warehouse": int64(1)}),
		up(map[string]any{"sku": "A", "warehouse": int64(2), "available": int64(60)}),
		del(map[string]any{"sku": "C", "warehouse": int64(1)}),
		del(map[string]any{"sku": "Z", "warehouse": int64(9)}), // absent: nothing to do
	))
	wantRows(t, "SELECT sku, warehouse, available FROM stock ORDER BY sku, warehouse", "A|2|60", "B|1|7")

	// Single-column key deletes.
	exec(t, "CREATE TABLE single (id INT PRIMARY KEY, v TEXT)")
	c2 := newConn(t, "single", []string{"id"}, nil)
	var recs []rec
	for i := range 10 {
		recs = append(recs, up(map[string]any{"id": int64(i), "v": fmt.Sprint("v", i)}))
	}
	apply(t, c2, mkBatch("t.single", []string{"id"}, recs...))
	apply(t, c2, mkBatch("t.single", []string{"id"}, del(map[string]any{"id": int64(3)}), del(map[string]any{"id": int64(5)}), del(map[string]any{"id": int64(42)})))
	wantRows(t, "SELECT COUNT(*), SUM(id) FROM single", "8|37")
}

func TestValueTypes(t *testing.T) {
	// Values are interpolated client-side by default; the server-side prepared path and a server
	// without backslash escapes must store exactly the same.
	for i, suffix := range []string{"", "?interpolateParams=false", "?sql_mode=%27STRICT_ALL_TABLES%2CNO_BACKSLASH_ESCAPES%27"} {
		t.Run(fmt.Sprint("dsn", suffix), func(t *testing.T) { testValueTypes(t, fmt.Sprint("types", i), suffix) })
	}
}

func testValueTypes(t *testing.T, table, dsnSuffix string) {
	exec(t, `CREATE TABLE `+table+` (
		id INT PRIMARY KEY,
		i INT, bi BIGINT, ubi BIGINT UNSIGNED, d DECIMAL(38,10), f DOUBLE, f4 FLOAT, b TINYINT(1), b2 BOOLEAN,
		s VARCHAR(100), tx TEXT, bl BLOB, dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6), yr YEAR,
		j JSON, j2 JSON, j3 JSON, s_from_time VARCHAR(40), dur TIME(6))`)
	c := newConn(t, table, []string{"id"}, map[string]any{"dsn": dsn() + dsnSuffix})
	zone := time.FixedZone("UTC+2", 2*3600)
	at := time.Date(2024, 2, 29, 23, 30, 15, 123456000, zone) // 21:30:15.123456 UTC
	blob := []byte{0, 1, 2, 0xff, 0xfe, '\'', '\\', '"', 0}
	apply(t, c, mkBatch("t.types", []string{"id"},
		up(map[string]any{
			"id": int32(1), "i": int32(-2147483648), "bi": int64(9223372036854775807), "ubi": uint64(18446744073709551615),
			"d": "12345678901234567890123456.1234567891", "f": 0.1, "f4": float32(0.1), "b": true, "b2": false,
			"s": "héllo wörld ✓ 😀 'quoted' `tick`", "tx": strings.Repeat("long text ", 1000), "bl": blob,
			"dt": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "dtm": at, "ts": at, "tm": "15:04:05.000001", "yr": int64(2024),
			"j":  map[string]any{"a": []any{int64(1), "two", nil, true}, "b": map[string]any{"c": 1.5}},
			"j2": []any{"x", int64(2)}, "j3": `{"raw": "json text"}`, "s_from_time": at, "dur": 26*time.Hour + 3*time.Minute + 4*time.Second + 500*time.Microsecond,
		}),
		up(map[string]any{"id": int64(2)}), // every other column NULL
	))
	wantRows(t, `SELECT id, i, bi, ubi, d, f, f4, b, b2, s, LENGTH(tx), HEX(bl), dt, dtm, ts, tm, yr,
			JSON_EXTRACT(j, '$.a[1]'), JSON_EXTRACT(j, '$.b.c'), JSON_LENGTH(j2), JSON_EXTRACT(j3, '$.raw'), s_from_time, dur FROM `+table+` ORDER BY id`,
		"1|-2147483648|9223372036854775807|18446744073709551615|12345678901234567890123456.1234567891|0.1|0.1|1|0|"+
			"héllo wörld ✓ 😀 'quoted' `tick`|10000|"+strings.ToUpper(hex.EncodeToString(blob))+"|2024-02-29|2024-02-29 21:30:15.123456|"+
			"2024-02-29 21:30:15.123456|15:04:05.000001|2024|\"two\"|1.5|2|\"json text\"|2024-02-29T21:30:15.123456Z|26:03:04.000500",
		"2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL")
	// TIMESTAMP is stored as UTC whatever the reading session's zone.
	wantRows(t, "SELECT UNIX_TIMESTAMP(ts) FROM "+table+" WHERE id = 1", fmt.Sprintf("%d.123456", at.Unix()))
	// A decimal keeps every digit (numerics travel as text, never as float).
	wantRows(t, "SELECT d = CAST('12345678901234567890123456.1234567891' AS DECIMAL(38,10)) FROM "+table+" WHERE id = 1", "1")

	// NaN cannot be stored: a permanent error naming the column.
	err := c.Apply(context.Background(), mkBatch("t.types", []string{"id"}, up(map[string]any{"id": int64(3), "f": nanValue()})))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "column f") {
		t.Fatalf("NaN: err = %v", err)
	}
	// PostgreSQL's infinity (an extreme instant from package mapping): a text column takes its
	// spelling, a DATETIME column cannot hold it.
	inf := time.UnixMicro(math.MaxInt64)
	apply(t, c, mkBatch("t.types", []string{"id"}, up(map[string]any{"id": int64(4), "s": inf})))
	wantRows(t, "SELECT s FROM "+table+" WHERE id = 4", "infinity")
	err = c.Apply(context.Background(), mkBatch("t.types", []string{"id"}, up(map[string]any{"id": int64(5), "dtm": inf})))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "column dtm = ") || !strings.Contains(err.Error(), "infinity") {
		t.Fatalf("infinity into DATETIME: err = %v", err)
	}
	// Of several such columns, every try names the same one, the first in the table's order.
	for range 20 {
		err := c.Apply(context.Background(), mkBatch("t.types", []string{"id"},
			up(map[string]any{"id": int64(3), "f4": float32(math.Inf(1)), "f": nanValue(), "b": true})))
		if err == nil || !strings.Contains(err.Error(), "column f = NaN") {
			t.Fatalf("NaN and +Inf: err = %v; want it to name column f, before f4", err)
		}
	}
}

func nanValue() float64 { var z float64; return z / z }

func TestQuotedIdentifiers(t *testing.T) {
	exec(t, "CREATE TABLE `odd ``name`` t` (`my key` INT NOT NULL, `we``ird` VARCHAR(20), `select` INT, `Mixed Case` TEXT, PRIMARY KEY (`my key`))")
	key := []string{"my key"}
	c := newConn(t, "`"+testDB+"`.`odd ``name`` t`", key, nil)
	apply(t, c, mkBatch("t.odd", key,
		up(map[string]any{"my key": int64(1), "we`ird": "a", "select": int64(1), "Mixed Case": "m"}),
		up(map[string]any{"my key": int64(2), "we`ird": "b", "select": int64(2), "mixed case": "n"}),
	))
	apply(t, c, mkBatch("t.odd", key,
		up(map[string]any{"my key": int64(1), "we`ird": "a2", "select": int64(10)}),
		del(map[string]any{"my key": int64(2)}),
	))
	wantRows(t, "SELECT `my key`, `we``ird`, `select`, `Mixed Case` FROM `odd ``name`` t`", "1|a2|10|m")

	// Unqualified names with backticks work as well.
	c2 := newConn(t, "odd `name` t", key, map[string]any{"offsets_table": "offs `x`"})
	apply(t, c2, mkBatch("t.odd", key, up(map[string]any{"my key": int64(3), "select": int64(3)})))
	wantRows(t, "SELECT COUNT(*) FROM `offs ``x```", "1")
}

func TestAbsentFieldsUntouched(t *testing.T) {
	exec(t, "CREATE TABLE toast (id INT PRIMARY KEY, qty INT, doc MEDIUMTEXT NOT NULL, meta JSON)")
	key := []string{"id"}
	c := newConn(t, "toast", key, nil)
	big := strings.Repeat("x", 5000)
	apply(t, c, mkBatch("t.toast", key,
		up(map[string]any{"id": int64(1), "qty": int64(1), "doc": big, "meta": map[string]any{"k": "v"}}),
		up(map[string]any{"id": int64(2), "qty": int64(2), "doc": big, "meta": nil}),
	))
	// id 1: doc and meta unchanged TOAST (absent); id 2: doc absent only; id 3: full.
	apply(t, c, mkBatch("t.toast", key,
		up(map[string]any{"id": int64(1), "qty": int64(11)}),
		up(map[string]any{"id": int64(2), "qty": int64(22), "meta": []any{int64(1)}}),
		up(map[string]any{"id": int64(3), "qty": int64(33), "doc": "new", "meta": nil}),
	))
	wantRows(t, "SELECT id, qty, LENGTH(doc), meta FROM toast ORDER BY id",
		`1|11|5000|{"k":"v"}`, "2|22|5000|[1]", "3|33|3|NULL")

	// A record lacking a NOT NULL column without default cannot create its row: a permanent
	// error naming the column, and nothing else of the batch is applied.
	b := mkBatch("t.toast", key, up(map[string]any{"id": int64(1), "qty": int64(100)}), up(map[string]any{"id": int64(4), "qty": int64(44)}))
	err := c.Apply(context.Background(), b)
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "lacks column doc") || !strings.Contains(err.Error(), fmt.Sprintf("@%d", b.Records[1].Offset)) {
		t.Fatalf("absent row: err = %v", err)
	}
	wantRows(t, "SELECT id, qty FROM toast ORDER BY id", "1|11", "2|22", "3|33")

	// Nullable (or defaulted) absent columns take the multi-row upsert path: untouched when the
	// row exists, defaults when it does not.
	exec(t, "CREATE TABLE toast2 (id INT PRIMARY KEY, qty INT, doc TEXT, tag VARCHAR(5) NOT NULL DEFAULT 'dflt')")
	c2 := newConn(t, "toast2", key, nil)
	apply(t, c2, mkBatch("t.toast2", key, up(map[string]any{"id": int64(1), "qty": int64(1), "doc": big, "tag": "t1"})))
	apply(t, c2, mkBatch("t.toast2", key,
		up(map[string]any{"id": int64(1), "qty": int64(2)}),
		up(map[string]any{"id": int64(2), "qty": int64(3)}),
	))
	wantRows(t, "SELECT id, qty, LENGTH(doc), tag FROM toast2 ORDER BY id", "1|2|5000|t1", "2|3|NULL|dflt")
}

func TestUncoalescedBatchKeepsOrder(t *testing.T) {
	// Batches are coalesced by the runtime; a batch that repeats a key still applies in order.
	exec(t, "CREATE TABLE ord (id INT PRIMARY KEY, v INT, doc TEXT)")
	key := []string{"id"}
	c := newConn(t, "ord", key, nil)
	apply(t, c, mkBatch("t.ord", key,
		up(map[string]any{"id": int64(1), "v": int64(1), "doc": "d1"}),
		up(map[string]any{"id": int64(2), "v": int64(1)}), // partial
		up(map[string]any{"id": int64(2), "v": int64(2), "doc": "d2"}),
		up(map[string]any{"id": int64(2), "v": int64(3)}), // partial again: keeps d2
		up(map[string]any{"id": int64(3), "v": int64(3), "doc": "d3"}),
		del(map[string]any{"id": int64(3)}),
		del(map[string]any{"id": int64(1)}),
		up(map[string]any{"id": int64(1), "v": int64(9), "doc": "again"}),
	))
	wantRows(t, "SELECT id, v, doc FROM ord ORDER BY id", "1|9|again", "2|3|d2")
}

func TestAllKeyTable(t *testing.T) {
	exec(t, "CREATE TABLE tags (item INT NOT NULL, tag VARCHAR(5) NOT NULL, PRIMARY KEY (item, tag))")
	key := []string{"item", "tag"}
	c := newConn(t, "tags", key, nil)
	b := mkBatch("t.tags", key,
		up(map[string]any{"item": int64(1), "tag": "a"}),
		up(map[string]any{"item": int64(1), "tag": "b"}),
	)
	apply(t, c, b)
	apply(t, c, b) // again: no error, no change
	apply(t, c, mkBatch("t.tags", key, up(map[string]any{"item": int64(1), "tag": "a"}), del(map[string]any{"item": int64(1), "tag": "b"}), up(map[string]any{"item": int64(2), "tag": "c"})))
	wantRows(t, "SELECT item, tag FROM tags ORDER BY item, tag", "1|a", "2|c")
	// Unlike INSERT IGNORE, a bad value is still an error, not a silently clipped row.
	err := c.Apply(context.Background(), mkBatch("t.tags", key, up(map[string]any{"item": int64(3), "tag": "toolong"})))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "1406") {
		t.Fatalf("too-long value in an all-key table: err = %v", err)
	}
	wantRows(t, "SELECT COUNT(*) FROM tags", "2")
}

func TestOffsetsAtomicWithRows(t *testing.T) {
	exec(t, "CREATE TABLE atomic (id INT PRIMARY KEY, n TINYINT)")
	key := []string{"id"}
	c := newConn(t, "atomic", key, nil)
	good := mkBatch("t.atomic", key, up(map[string]any{"id": int64(1), "n": int64(1)}))
	apply(t, c, good)
	bad := mkBatch("t.atomic", key,
		up(map[string]any{"id": int64(1), "n": int64(2)}),
		up(map[string]any{"id": int64(2), "n": int64(2)}),
		del(map[string]any{"id": int64(1)}),
		up(map[string]any{"id": int64(3), "n": int64(1000)}), // out of range for TINYINT
	)
	err := c.Apply(context.Background(), bad)
	if err == nil || sink.IsRetryable(err) {
		t.Fatalf("bad batch: err = %v, want a permanent error", err)
	}
	wantRows(t, "SELECT id, n FROM atomic ORDER BY id", "1|1")
	if off, _ := storedOffset(t, c, "t.atomic"); off != good.NextOffset {
		t.Fatalf("offset moved to %d after a failed batch, want %d", off, good.NextOffset)
	}
	// What the runtime does next: bisect; the good half applies and records its resume offset.
	half := *bad
	half.Records = bad.Records[:3]
	half.NextOffset = bad.Records[3].Offset
	apply(t, c, &half)
	wantRows(t, "SELECT id, n FROM atomic ORDER BY id", "2|2")
	if off, _ := storedOffset(t, c, "t.atomic"); off != bad.Records[3].Offset {
		t.Fatalf("offset = %d, want %d", off, bad.Records[3].Offset)
	}
}

func TestBadValuesArePermanentAndNamed(t *testing.T) {
	exec(t, "CREATE TABLE bad (id INT PRIMARY KEY, n TINYINT, code VARCHAR(4), req INT NOT NULL DEFAULT 0, email VARCHAR(50), UNIQUE KEY (email))")
	key := []string{"id"}
	c := newConn(t, "bad", key, nil)
	apply(t, c, mkBatch("t.bad", key, up(map[string]any{"id": int64(1), "email": "a@x"})))
	cases := []struct {
		name   string
		fields map[string]any
		want   []string
	}{
		{"out of range", map[string]any{"n": int64(300)}, []string{"1264", "column n = 300"}},
		{"incorrect value", map[string]any{"n": "abc"}, []string{"1366", `column n = "abc"`}},
		{"too long", map[string]any{"code": "abcdef"}, []string{"1406", `column code = "abcdef"`}},
		{"not null", map[string]any{"req": nil}, []string{"1048", "column req = NULL"}},
		{"non-key unique", map[string]any{"email": "a@x"}, []string{"uplicate", "unique index other than the key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The bad record sits among good ones; the error names it by its offset.
			good1 := map[string]any{"id": int64(10), "n": int64(1)}
			good2 := map[string]any{"id": int64(11), "n": int64(1)}
			f := map[string]any{"id": int64(12)}
			for k, v := range tc.fields {
				f[k] = v
			}
			for k := range tc.fields { // same field set as the bad one
				if _, ok := good1[k]; !ok {
					good1[k], good2[k] = okValue(k), okValue(k)
				}
			}
			if tc.name == "non-key unique" {
				good1["email"], good2["email"] = "g1@x", "g2@x"
			}
			b := mkBatch("t.bad", key, up(good1), up(f), up(good2))
			err := c.Apply(context.Background(), b)
			if err == nil {
				t.Fatal("no error")
			}
			if sink.IsRetryable(err) {
				t.Fatalf("retryable: %v", err)
			}
			// Bisected to the bad record alone, as the runtime does.
			single := mkBatch("t.bad", key, up(f))
			err = c.Apply(context.Background(), single)
			if err == nil || sink.IsRetryable(err) {
				t.Fatalf("single: err = %v", err)
			}
			for _, w := range append(tc.want, fmt.Sprintf("@%d", single.Records[0].Offset)) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			t.Logf("reason: %v", err)
		})
	}
	wantRows(t, "SELECT id, email FROM bad ORDER BY id", "1|a@x")

	// In a multi-row statement the server's row number points at the record at fault.
	b := mkBatch("t.bad", key,
		up(map[string]any{"id": int64(20), "n": int64(1)}),
		up(map[string]any{"id": int64(21), "n": int64(1)}),
		up(map[string]any{"id": int64(22), "n": int64(999)}),
	)
	err := c.Apply(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("@%d", b.Records[2].Offset)) || !strings.Contains(err.Error(), "n = 999") {
		t.Fatalf("multi-row error does not name the third record: %v", err)
	}
}

func okValue(k string) any {
	switch k {
	case "code":
		return "ok"
	case "req":
		return int64(1)
	case "email":
		return nil
	}
	return int64(1)
}

func TestForeignKeyAndCheckConstraint(t *testing.T) {
	exec(t, "CREATE TABLE parent (id INT PRIMARY KEY)")
	exec(t, "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT, qty INT, FOREIGN KEY (parent_id) REFERENCES parent(id), CONSTRAINT qty_positive CHECK (qty > 0))")
	exec(t, "INSERT INTO parent VALUES (1)")
	key := []string{"id"}
	c := newConn(t, "child", key, nil)
	apply(t, c, mkBatch("t.child", key, up(map[string]any{"id": int64(1), "parent_id": int64(1), "qty": int64(1)})))
	for _, f := range []map[string]any{
		{"id": int64(2), "parent_id": int64(99), "qty": int64(1)},
		{"id": int64(3), "parent_id": int64(1), "qty": int64(-1)},
	} {
		err := c.Apply(context.Background(), mkBatch("t.child", key, up(f)))
		if err == nil || sink.IsRetryable(err) {
			t.Fatalf("%v: err = %v, want permanent", f, err)
		}
		t.Logf("reason: %v", err)
	}
	wantRows(t, "SELECT COUNT(*) FROM child", "1")
}

func TestNonKeyUniqueConflictDoesNotRekey(t *testing.T) {
	// IODKU updates the row of whichever unique key conflicts; the connector turns a conflict on
	// a unique key other than the sink's key into an error instead of rewriting another row.
	exec(t, "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(50) NOT NULL, name TEXT, UNIQUE KEY uq_email (email))")
	key := []string{"id"}
	c := newConn(t, "users", key, nil)
	apply(t, c, mkBatch("t.users", key, up(map[string]any{"id": int64(1), "email": "a@x", "name": "A"})))
	err := c.Apply(context.Background(), mkBatch("t.users", key, up(map[string]any{"id": int64(2), "email": "a@x", "name": "B"})))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "unique index other than the key") {
		t.Fatalf("err = %v", err)
	}
	wantRows(t, "SELECT id, email, name FROM users", "1|a@x|A")
	// The key's own conflicts update as usual, unique column included.
	apply(t, c, mkBatch("t.users", key, up(map[string]any{"id": int64(1), "email": "new@x", "name": "A2"})))
	apply(t, c, mkBatch("t.users", key, up(map[string]any{"id": int64(2), "email": "a@x", "name": "B"})))
	wantRows(t, "SELECT id, email, name FROM users ORDER BY id", "1|new@x|A2", "2|a@x|B")

	// A unique (not primary) sink key on a table with an auto-increment id.
	exec(t, "CREATE TABLE leads (id INT AUTO_INCREMENT PRIMARY KEY, ext_id VARCHAR(10) NOT NULL, score INT, UNIQUE KEY (ext_id))")
	c2 := newConn(t, "leads", []string{"ext_id"}, nil)
	apply(t, c2, mkBatch("t.leads", []string{"ext_id"}, up(map[string]any{"ext_id": "L1", "score": int64(1)}), up(map[string]any{"ext_id": "L2", "score": int64(2)})))
	apply(t, c2, mkBatch("t.leads", []string{"ext_id"}, up(map[string]any{"ext_id": "L1", "score": int64(10)})))
	wantRows(t, "SELECT id, ext_id, score FROM leads ORDER BY id", "1|L1|10", "2|L2|2")
}

func TestSoftDelete(t *testing.T) {
	exec(t, "CREATE TABLE soft (id INT PRIMARY KEY, v TEXT, deleted_at DATETIME(6) NULL)")
	exec(t, "CREATE TABLE soft2 (id INT PRIMARY KEY, v TEXT, deleted TINYINT(1) NOT NULL DEFAULT 0)")
	key := []string{"id"}
	for _, tc := range []struct{ table, col, live, dead string }{
		{"soft", "deleted_at", "NULL", "set"},
		{"soft2", "deleted", "0", "1"},
	} {
		c, err := New(context.Background(), sink.Params{Sink: "test-sink", Key: key, SoftDeleteColumn: tc.col,
			With: map[string]any{"dsn": dsn(), "table": tc.table, "soft_delete_column": tc.col}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		apply(t, c.(*Connector), mkBatch("t.soft", key, up(map[string]any{"id": int64(1), "v": "a"}), up(map[string]any{"id": int64(2), "v": "b"})))
		// What the runtime sends for a delete with on_delete: soft_delete.
		apply(t, c.(*Connector), mkBatch("t.soft", key, up(map[string]any{"id": int64(1), tc.col: true})))
		q := fmt.Sprintf("SELECT id, v, IF(%s IS NULL, 'NULL', IF(%s = 0, '0', IF(%s = 1, '1', 'set'))) FROM %s ORDER BY id", tc.col, tc.col, tc.col, tc.table)
		wantRows(t, q, "1|a|"+tc.dead, "2|b|"+tc.live)
		// Written again: live again.
		apply(t, c.(*Connector), mkBatch("t.soft", key, up(map[string]any{"id": int64(1), "v": "a2"})))
		wantRows(t, q, "1|a2|"+tc.live, "2|b|"+tc.live)
		// A truncate marks every row deleted.
		apply(t, c.(*Connector), mkBatch("t.soft", key, trunc()))
		wantRows(t, q, "1|a2|"+tc.dead, "2|b|"+tc.dead)
	}
	// The mark of a timestamp column is the delete's commit time in the source, so reapplying
	// writes the same.
	sc, err := New(context.Background(), sink.Params{Sink: "test-sink", Key: key, SoftDeleteColumn: "deleted_at",
		With: map[string]any{"dsn": dsn(), "table": "soft", "soft_delete_column": "deleted_at"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	c0 := sc.(*Connector)
	sd := mkBatch("t.soft", key, up(map[string]any{"id": int64(7), "deleted_at": true}))
	sd.Records[0].Event = &change.Event{Source: change.Source{TsMs: time.Date(2025, 1, 2, 3, 4, 5, 678e6, time.UTC).UnixMilli()}}
	apply(t, c0, sd)
	apply(t, c0, sd)
	wantRows(t, "SELECT deleted_at FROM soft WHERE id = 7", "2025-01-02 03:04:05.678000")

	exec(t, "CREATE TABLE soft_bad (id INT PRIMARY KEY, deleted VARCHAR(5))")
	_, err = New(context.Background(), sink.Params{Sink: "test-sink", Key: key, SoftDeleteColumn: "deleted",
		With: map[string]any{"dsn": dsn(), "table": "soft_bad", "soft_delete_column": "deleted"}})
	if err == nil || !strings.Contains(err.Error(), "with.soft_delete_column") {
		t.Fatalf("varchar soft delete column: err = %v", err)
	}

	// Soft-deleting an absent row of a table with required columns is nothing to do.
	exec(t, "CREATE TABLE soft3 (id INT PRIMARY KEY, v TEXT NOT NULL, deleted_at TIMESTAMP(6) NULL)")
	c, err := New(context.Background(), sink.Params{Sink: "test-sink", Key: key, SoftDeleteColumn: "deleted_at",
		With: map[string]any{"dsn": dsn(), "table": "soft3", "soft_delete_column": "deleted_at"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	apply(t, c.(*Connector), mkBatch("t.soft", key, up(map[string]any{"id": int64(1), "v": "a"})))
	apply(t, c.(*Connector), mkBatch("t.soft", key, up(map[string]any{"id": int64(1), "deleted_at": true}), up(map[string]any{"id": int64(2), "deleted_at": true})))
	wantRows(t, "SELECT id, v, deleted_at IS NOT NULL FROM soft3", "1|a|1")
}

func TestChunking(t *testing.T) {
	exec(t, "CREATE TABLE chunks (id INT PRIMARY KEY, a INT, b INT, c VARCHAR(200))")
	key := []string{"id"}
	c := newConn(t, "chunks", key, nil)
	// 20,000 rows x 4 columns = 80,000 placeholders: more than one statement may take.
	var recs []rec
	for i := range 20000 {
		recs = append(recs, up(map[string]any{"id": int64(i), "a": int64(i), "b": int64(2 * i), "c": "row"}))
	}
	apply(t, c, mkBatch("t.chunks", key, recs...))
	wantRows(t, "SELECT COUNT(*), SUM(a), SUM(b) FROM chunks", "20000|199990000|399980000")
	// A small max_allowed_packet: statements are cut by size.
	c.maxPacket = 16 << 10
	recs = recs[:0]
	for i := range 3000 {
		recs = append(recs, up(map[string]any{"id": int64(i), "a": int64(-i), "b": int64(0), "c": strings.Repeat("z", 150)}))
	}
	var dels []rec
	for i := 3000; i < 20000; i++ {
		dels = append(dels, del(map[string]any{"id": int64(i)}))
	}
	apply(t, c, mkBatch("t.chunks", key, append(recs, dels...)...))
	wantRows(t, "SELECT COUNT(*), SUM(a), MIN(LENGTH(c)) FROM chunks", "3000|-4498500|150")
}

func TestSchemaChangeAndUnknownField(t *testing.T) {
	exec(t, "CREATE TABLE evolve (id INT PRIMARY KEY, a INT)")
	key := []string{"id"}
	c := newConn(t, "evolve", key, nil)
	b := mkBatch("t.evolve", key, up(map[string]any{"id": int64(1), "a": int64(1), "b": "new"}))
	err := c.Apply(context.Background(), b)
	if err == nil || !sink.IsRetryable(err) || !strings.Contains(err.Error(), `field "b" is not a column`) {
		t.Fatalf("unknown field: err = %v, want a retryable error naming the field", err)
	}
	exec(t, "ALTER TABLE evolve ADD COLUMN b VARCHAR(10)")
	apply(t, c, b)
	wantRows(t, "SELECT id, a, b FROM evolve", "1|1|new")

	// A dropped table stalls the sink (retryable) instead of dead-lettering every record, and
	// the connector picks the table up again once it is back.
	exec(t, "DROP TABLE evolve")
	b2 := mkBatch("t.evolve", key, up(map[string]any{"id": int64(2), "a": int64(2)}))
	for range 2 {
		if err := c.Apply(context.Background(), b2); err == nil || !sink.IsRetryable(err) {
			t.Fatalf("dropped table: err = %v, want retryable", err)
		}
	}
	exec(t, "CREATE TABLE evolve (id INT PRIMARY KEY, a INT)")
	// A new table lacks the rows written before: the stored offsets go back to 0 and the batch
	// is refused once, so that the workers read their partitions again (identity.go).
	if err := c.Apply(context.Background(), b2); !errors.Is(err, sink.ErrFenced) {
		t.Fatalf("table created again: err = %v, want ErrFenced", err)
	}
	apply(t, c, b2)
	wantRows(t, "SELECT id, a FROM evolve", "2|2")
}

func TestSessionSettings(t *testing.T) {
	exec(t, "CREATE TABLE sess (id INT PRIMARY KEY)")
	c := newConn(t, "sess", []string{"id"}, nil)
	var mode, zone string
	if err := c.db.QueryRow("SELECT @@SESSION.sql_mode, @@SESSION.time_zone").Scan(&mode, &zone); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mode, "STRICT_ALL_TABLES") || zone != "+00:00" {
		t.Fatalf("sql_mode = %q, time_zone = %q", mode, zone)
	}
}

func TestConcurrentPartitions(t *testing.T) {
	exec(t, "CREATE TABLE conc (id INT PRIMARY KEY, part INT, v INT)")
	key := []string{"id"}
	c := newConn(t, "conc", key, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 10 {
				b := &sink.Batch{Sink: "test-sink", Topic: "t.conc", Partition: int32(p), NextOffset: int64(round+1) * 100}
				for i := range 100 {
					id := int64(i*4 + p) // keys interleave across partitions
					b.Records = append(b.Records, sink.Record{Op: sink.OpUpsert, Topic: "t.conc", Partition: int32(p), Offset: int64(round*100 + i),
						Key: map[string]any{"id": id}, Fields: map[string]any{"id": id, "part": int64(p), "v": int64(round)}})
				}
				for attempt := 0; ; attempt++ {
					err := c.Apply(context.Background(), b)
					if err == nil {
						break
					}
					if !sink.IsRetryable(err) || attempt == 20 {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantRows(t, "SELECT COUNT(*), MIN(v), MAX(v) FROM conc", "400|9|9")
	offs, err := c.Offsets(context.Background(), "test-sink", []string{"t.conc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs["t.conc"]) != 4 || offs["t.conc"][3] != 1000 {
		t.Fatalf("offsets = %v", offs)
	}
}

func TestLockWaitTimeoutIsRetryable(t *testing.T) {
	exec(t, "CREATE TABLE locked (id INT PRIMARY KEY, v INT)")
	exec(t, "INSERT INTO locked VALUES (1, 1)")
	key := []string{"id"}
	c := newConn(t, "locked", key, map[string]any{"dsn": dsn() + "?innodb_lock_wait_timeout=1"})
	ctx := context.Background()
	holder, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT * FROM " + quoteIdent(testDB) + ".locked WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	b := mkBatch("t.locked", key, up(map[string]any{"id": int64(1), "v": int64(2)}))
	err = c.Apply(ctx, b)
	var me *mysql.MySQLError
	if !sink.IsRetryable(err) || !errors.As(err, &me) || me.Number != 1205 {
		t.Fatalf("err = %v, want a retryable lock wait timeout", err)
	}
	_ = tx.Rollback()
	apply(t, c, b)
	wantRows(t, "SELECT v FROM locked", "2")
}

func TestKilledConnectionRecovers(t *testing.T) {
	exec(t, "CREATE TABLE killed (id INT PRIMARY KEY, v INT)")
	key := []string{"id"}
	c := newConn(t, "killed", key, map[string]any{"max_conns": 1})
	apply(t, c, mkBatch("t.killed", key, up(map[string]any{"id": int64(1), "v": int64(1)})))
	var id int64
	if err := c.db.QueryRow("SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	exec(t, fmt.Sprintf("KILL %d", id))
	// KILL only marks the thread; it leaves the process list when it notices.
	gone := fmt.Sprintf("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %d", id)
	for deadline := time.Now().Add(30 * time.Second); rows(t, gone)[0] != "0"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connection %d still in the process list 30s after KILL", id)
		}
	}
	for i := 1; ; i++ {
		err := c.Apply(context.Background(), mkBatch("t.killed", key, up(map[string]any{"id": int64(1), "v": int64(i + 1)})))
		if err == nil {
			t.Logf("attempt %d applied", i)
			wantRows(t, "SELECT v FROM killed", fmt.Sprint(i+1))
			break
		}
		if !sink.IsRetryable(err) || i == 3 {
			t.Fatalf("attempt %d after KILL: err = %v, want nil or retryable", i, err)
		}
		t.Logf("attempt %d after KILL: retryable: %v", i, err)
	}
	// A session killed inside a transaction (while the connector waits on a lock) is retryable.
	exec(t, "INSERT INTO killed VALUES (2, 0)")
	holder, err := admin.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tx, err := holder.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("UPDATE " + quoteIdent(testDB) + ".killed SET v = -1 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if err := c.db.QueryRow("SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = admin.Exec(fmt.Sprintf("KILL %d", id))
	}()
	err = c.Apply(context.Background(), mkBatch("t.killed", key, up(map[string]any{"id": int64(2), "v": int64(5)})))
	if err == nil || !sink.IsRetryable(err) {
		t.Fatalf("killed mid-transaction: err = %v, want retryable", err)
	}
	t.Logf("killed mid-transaction: %v", err)
}

// proxy forwards TCP connections to the server until it is stopped.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestServerUnreachableIsRetryable(t *testing.T) {
	exec(t, "CREATE TABLE gone (id INT PRIMARY KEY)")
	cfg, err := mysql.ParseDSN(dsn())
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cfg.Addr)
	cfg.Addr = p.ln.Addr().String()
	key := []string{"id"}
	c := newConn(t, "gone", key, map[string]any{"dsn": cfg.FormatDSN()})
	apply(t, c, mkBatch("t.gone", key, up(map[string]any{"id": int64(1)})))
	p.stop() // the server is gone, and nothing listens any more
	for i := range 2 {
		err := c.Apply(context.Background(), mkBatch("t.gone", key, up(map[string]any{"id": int64(2)})))
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("attempt %d: err = %v, want retryable", i, err)
		}
	}
	if _, err := c.Offsets(context.Background(), "test-sink", []string{"t.gone"}); !sink.IsRetryable(err) {
		t.Fatalf("Offsets: err = %v, want retryable", err)
	}
	// Starting against a closed port is retryable too.
	_, err = New(context.Background(), sink.Params{Sink: "s", Key: key, With: map[string]any{"dsn": cfg.FormatDSN(), "table": "gone"}})
	if err == nil || !sink.IsRetryable(err) {
		t.Fatalf("New on a closed port: err = %v", err)
	}
	// A cancelled context never looks like bad data.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c2 := newConn(t, "gone", key, nil)
	if err := c2.Apply(ctx, mkBatch("t.gone", key, up(map[string]any{"id": int64(3)}))); !sink.IsRetryable(err) {
		t.Fatalf("cancelled: err = %v, want retryable", err)
	}
}

func TestClassification(t *testing.T) {
	for _, n := range []uint16{1213, 1205, 2006, 2013, 1040, 1290, 1836, 1927, 1146} {
		if !isRetryable(&mysql.MySQLError{Number: n}) {
			t.Errorf("%d should be retryable", n)
		}
	}
	for _, n := range []uint16{1264, 1366, 1406, 1048, 1062, 1452, 3819, 4025, 1292, 1364, 1153} {
		if isRetryable(&mysql.MySQLError{Number: n}) {
			t.Errorf("%d should not be retryable", n)
		}
	}
	for _, err := range []error{mysql.ErrInvalidConn, fmt.Errorf("x: %w", io.ErrUnexpectedEOF), &net.OpError{Op: "dial", Err: errors.New("refused")}} {
		if !isRetryable(err) {
			t.Errorf("%v should be retryable", err)
		}
	}
	for _, tc := range []struct {
		msg, col string
		row      int
	}{
		{"Out of range value for column 'n' at row 3", "n", 3},
		{"Incorrect integer value: 'for 'x'' for column `db`.`t`.`we``ird` at row 12", "we`ird", 12},
		{"Column 'a b' cannot be null", "a b", 0},
		{"Data too long for column 'c' at row 1", "c", 1},
	} {
		col, row := errColumnRow(tc.msg)
		if col != tc.col || row != tc.row {
			t.Errorf("errColumnRow(%q) = %q, %d; want %q, %d", tc.msg, col, row, tc.col, tc.row)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	exec(t, "CREATE TABLE cfg (id INT PRIMARY KEY, code VARCHAR(10), other INT, UNIQUE KEY (code, other), KEY (other))")
	exec(t, "CREATE TABLE cfg_myisam (id INT PRIMARY KEY) ENGINE=MyISAM")
	exec(t, "CREATE VIEW cfg_view AS SELECT id FROM cfg")
	exec(t, "CREATE TABLE cfg_prefix (name VARCHAR(100) NOT NULL, UNIQUE KEY (name(10)))")
	ok := map[string]any{"dsn": dsn(), "table": "cfg"}
	with := func(kv ...any) map[string]any {
		w := map[string]any{}
		for k, v := range ok {
			w[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(w, kv[i].(string))
			} else {
				w[kv[i].(string)] = kv[i+1]
			}
		}
		return w
	}
	cases := []struct {
		name string
		with map[string]any
		key  []string
		want string
	}{
		{"no dsn", with("dsn", nil), nil, "with.dsn: required"},
		{"dsn not a string", with("dsn", 5), nil, "with.dsn: expected a string"},
		{"bad dsn", with("dsn", "root@db.invalid:3306/x"), nil, "with.dsn:"},
		{"other scheme", with("dsn", "postgres://u:p@h/db"), nil, "with.dsn:"},
		{"no table", with("table", nil), nil, "with.table: required"},
		{"unqualified without db", with("dsn", "root:hunter2@tcp(db.invalid:3306)/"), nil, "with.table:"},
		{"bad max_conns", with("max_conns", 0), nil, "with.max_conns"},
		{"max_conns text", with("max_conns", "many"), nil, "with.max_conns"},
		{"bad tls", with("tls", "maybe"), nil, "with.tls"},
		{"bad offsets_table", with("offsets_table", "a.b.c"), nil, "with.offsets_table"},
		{"missing table", with("table", "nope"), nil, "with.table: table `" + testDB + "`.`nope` does not exist"},
		{"view", with("table", "cfg_view"), nil, "not a base table"},
		{"myisam", with("table", "cfg_myisam"), nil, "MyISAM"},
		{"no key", ok, []string{}, "key: required"},
		{"key not a column", ok, []string{"sku"}, `key: field "sku" is not a column`},
		{"key not unique", ok, []string{"other"}, "key: (other) is not a PRIMARY or UNIQUE key"},
		{"key part of a unique key", ok, []string{"code"}, "key: (code) is not a PRIMARY or UNIQUE key"},
		{"prefix unique key", with("table", "cfg_prefix"), []string{"name"}, "key: (name) is not a PRIMARY or UNIQUE key"},
		{"soft delete column", with("soft_delete_column", "gone"), nil, "with.soft_delete_column"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = []string{"id"}
			}
			p := sink.Params{Sink: "s", With: tc.with, Key: key}
			if tc.name == "soft delete column" {
				p.SoftDeleteColumn = "gone"
			}
			c, err := New(context.Background(), p)
			if err == nil {
				c.Close()
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	// A key in another order than the index, a composite unique key, URL DSNs and tls are fine.
	for _, tc := range []struct {
		with map[string]any
		key  []string
	}{
		{ok, []string{"other", "code"}},
		{with("dsn", urlDSN(t)+"?timeout=5s"), []string{"id"}},
		{with("tls", "false", "max_conns", "2"), []string{"ID"}},
		{with("tls", false), []string{"id"}},
		{with("tls", "preferred"), []string{"id"}},
		{with("table", testDB+".cfg", "max_conns", float64(3)), []string{"id"}},
	} {
		c, err := New(context.Background(), sink.Params{Sink: "s", With: tc.with, Key: tc.key})
		if err != nil {
			t.Fatalf("%v %v: %v", tc.with, tc.key, err)
		}
		c.Close()
	}
	// An unknown key (a typo, or the postgres connector's `url`) is refused, naming it.
	_, err := New(context.Background(), sink.Params{Sink: "s", Key: []string{"id"}, With: with("url", "x", "max_con", 2)})
	if err == nil || !strings.Contains(err.Error(), "with.url: unknown setting") || !strings.Contains(err.Error(), "with.max_con: unknown setting") {
		t.Fatalf("unknown keys: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}

	// A wrong password fails at connect without showing it.
	_, err = New(context.Background(), sink.Params{Sink: "s", Key: []string{"id"},
		With: map[string]any{"dsn": "mysql://root:hunter2@" + serverAddr(t) + "/" + testDB, "table": "cfg"}})
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// urlDSN is the test server as a mysql:// URL.
func urlDSN(t *testing.T) string {
	cfg, err := mysql.ParseDSN(dsn())
	if err != nil {
		t.Fatal(err)
	}
	u := "mysql://" + cfg.User
	if cfg.Passwd != "" {
		u += ":" + cfg.Passwd
	}
	return u + "@" + cfg.Addr + "/" + cfg.DBName
}

func TestParseTableName(t *testing.T) {
	for _, tc := range []struct{ in, schema, name string }{
		{"t", "def", "t"},
		{"db.t", "db", "t"},
		{"`my db`.`t.x`", "my db", "t.x"},
		{"`a``b`", "def", "a`b"},
		{"odd `name` t", "def", "odd `name` t"},
	} {
		got, err := parseTableName(tc.in, "def")
		if err != nil || got.schema != tc.schema || got.name != tc.name {
			t.Errorf("parseTableName(%q) = %+v, %v", tc.in, got, err)
		}
	}
	for _, in := range []string{"", "a..b", "a.", "`open", "`a`b", "a.b.c"} {
		if _, err := parseTableName(in, "def"); err == nil {
			t.Errorf("parseTableName(%q): no error", in)
		}
	}
}

// BenchmarkUpsert10k applies 10,000-record batches of a 7-column table: the first five insert
// new rows, later ones update them. "default" interpolates values client-side (the connector's
// default); "prepared" uses server-side prepared statements (interpolateParams=false).
func BenchmarkUpsert10k(b *testing.B) {
	for _, mode := range []struct{ name, suffix string }{{"default", ""}, {"prepared", "?interpolateParams=false"}} {
		b.Run(mode.name, func(b *testing.B) { benchUpsert(b, mode.suffix) })
	}
}

func benchUpsert(b *testing.B, dsnSuffix string) {
	exec(b, "DROP TABLE IF EXISTS bench")
	exec(b, `CREATE TABLE bench (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, qty INT NOT NULL,
		price DECIMAL(12,2) NOT NULL, active TINYINT(1) NOT NULL, updated_at DATETIME(6) NOT NULL, note TEXT)`)
	key := []string{"id"}
	c := newConn(b, "bench", key, map[string]any{"dsn": dsn() + dsnSuffix})
	const batchSize = 10000
	batches := make([]*sink.Batch, 5)
	now := time.Now()
	for n := range batches {
		recs := make([]rec, batchSize)
		for i := range recs {
			id := int64(n*batchSize + i)
			recs[i] = up(map[string]any{"id": id, "name": fmt.Sprintf("item-%d", id), "qty": id % 1000,
				"price": fmt.Sprintf("%d.%02d", id%10000, id%100), "active": id%2 == 0, "updated_at": now, "note": "benchmark row"})
		}
		batches[n] = mkBatch("bench.items", key, recs...)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		bt := batches[i%len(batches)]
		for j := range bt.Records {
			bt.Records[j].Fields["qty"] = int64(i)
		}
		if err := c.Apply(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/time.Since(start).Seconds(), "rows/s")
}

func TestParseDSN(t *testing.T) {
	for _, tc := range []struct {
		in, user, pass, addr, db string
		param                    string
	}{
		{"u:p@tcp(db.example:3307)/app?timeout=5s", "u", "p", "db.example:3307", "app", "timeout"},
		{"mysql://u:p%40ss%2Fw%3Ard@db.example/app?readTimeout=1s", "u", "p@ss/w:rd", "db.example:3306", "app", "readTimeout"},
		{"mariadb://u@[::1]:3310/app", "u", "", "[::1]:3310", "app", ""},
		{"mysql://u@[::1]/app", "u", "", "[::1]:3306", "app", ""},
		{"MYSQL://db.example:3306/", "", "", "db.example:3306", "", ""},
	} {
		cfg, explicit, err := parseDSN(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if cfg.User != tc.user || cfg.Passwd != tc.pass || cfg.Addr != tc.addr || cfg.DBName != tc.db || cfg.Net != "tcp" {
			t.Errorf("%s: got user %q pass %q addr %q db %q net %q", tc.in, cfg.User, cfg.Passwd, cfg.Addr, cfg.DBName, cfg.Net)
		}
		if tc.param != "" && !explicit.Has(tc.param) {
			t.Errorf("%s: parameter %s not seen", tc.in, tc.param)
		}
	}
	for _, in := range []string{
		"mysql://u:s3cret@host:notaport/db",
		"mysql://u:s3cret@/db",
		"u:s3cret@host:3306/db",
		"u:s3cret@tcp(host:3306)",
		"mysql://u:s3cret@host/db/extra",
		"u:s3cret@tcp(host:3306)/db?timeout=never",
	} {
		_, _, err := parseDSN(in)
		if err == nil {
			t.Errorf("%s: no error", in)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error leaks the password: %v", in, err)
		}
	}
}

// TestLooseKeyCollation: under MySQL's default collations "abc", "ABC" and "abc " are one key.
// A record keyed "ABC" is refused rather than written over the row of "abc", and deleting "ABC"
// leaves "abc" alone. A _bin collation (PAD SPACE) tells case apart but not trailing spaces;
// a binary column tells all three apart.
func TestLooseKeyCollation(t *testing.T) {
	key := []string{"sku"}
	cases := []struct {
		table, column string
		refused       []string // refused over "abc"
		apart         []string // rows of their own next to "abc"
	}{
		{"ci_keys", "VARCHAR(20) COLLATE utf8mb4_general_ci", []string{"ABC", "abc "}, nil},
		{"bin_keys", "VARCHAR(20) COLLATE utf8mb4_bin", []string{"abc "}, []string{"ABC"}},
		{"binary_keys", "VARBINARY(20)", nil, []string{"ABC", "abc "}},
	}
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			exec(t, "CREATE TABLE "+tc.table+" (sku "+tc.column+" PRIMARY KEY, qty INT NOT NULL)")
			c := newConn(t, tc.table, key, nil)
			topic := "t." + tc.table
			apply(t, c, mkBatch(topic, key, up(map[string]any{"sku": "abc", "qty": int64(1)})))
			for _, sku := range tc.refused {
				err := c.Apply(context.Background(), mkBatch(topic, key, up(map[string]any{"sku": sku, "qty": int64(2)})))
				if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "collation") {
					t.Fatalf("upsert %q over \"abc\": err = %v, want a permanent error naming the collation", sku, err)
				}
				apply(t, c, mkBatch(topic, key, del(map[string]any{"sku": sku})))
			}
			want := []string{"[abc]|1"}
			for i, sku := range tc.apart {
				apply(t, c, mkBatch(topic, key, up(map[string]any{"sku": sku, "qty": int64(10 + i)})))
				want = append(want, fmt.Sprintf("[%s]|%d", sku, 10+i))
			}
			wantRows(t, "SELECT concat('[', sku, ']'), qty FROM "+tc.table+" ORDER BY qty", want...)
			for _, sku := range tc.apart {
				apply(t, c, mkBatch(topic, key, del(map[string]any{"sku": sku})))
			}
			wantRows(t, "SELECT concat('[', sku, ']'), qty FROM "+tc.table+" ORDER BY qty", "[abc]|1")
		})
	}
}
