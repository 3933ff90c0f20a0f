package mysql

import (
	"context"
	"os"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/mapping"
)

// debeziumRec decodes a record of pkg/codec/testdata/debezium (key and value: file names; an
// empty value is a tombstone) and maps it with the identity mapping keyed on id, as a sink does.
// ok is false for what a sink skips.
func debeziumRec(t *testing.T, topic, key, value string) (r rec, ok bool) {
	t.Helper()
	load := func(name string) []byte {
		if name == "" {
			return nil
		}
		b, err := os.ReadFile("../../pkg/codec/testdata/debezium/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dec, err := codec.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.Decode(context.Background(), topic, load(key), load(value))
	if err != nil {
		t.Fatal(err)
	}
	if ev == nil {
		return rec{}, false
	}
	m, err := mapping.Compile(mapping.Spec{Sink: "test-sink", Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	fields, keep, err := m.Apply(ev)
	if err != nil || !keep {
		t.Fatalf("map: keep %v, %v", keep, err)
	}
	if ev.Op == change.OpDelete {
		return del(map[string]any{"id": fields["id"]}), true
	}
	return up(fields), true
}

// TestDebeziumMySQLCreate applies the create event of Debezium's MySQL connector documentation.
func TestDebeziumMySQLCreate(t *testing.T) {
	exec(t, "CREATE TABLE dbz_customers (id INT PRIMARY KEY, first_name VARCHAR(50), last_name VARCHAR(50), email VARCHAR(100))")
	c := newConn(t, "dbz_customers", []string{"id"}, nil)
	r, ok := debeziumRec(t, "mysql-server-1.inventory.customers", "mysql-key.json", "mysql-create.json")
	if !ok {
		t.Fatal("create skipped")
	}
	apply(t, c, mkBatch("mysql-server-1.inventory.customers", []string{"id"}, r))
	wantRows(t, "SELECT id, first_name, last_name, email FROM dbz_customers", "1004|Anne|Kretchmar|annek@noanswer.org")
}

// TestDebeziumPlaceholderLeavesColumnsAlone applies Debezium's UPDATE with unchanged TOASTed
// columns: only title changes; then its DELETE removes the row and the tombstone is skipped.
func TestDebeziumPlaceholderLeavesColumnsAlone(t *testing.T) {
	exec(t, "CREATE TABLE dbz_articles (id INT PRIMARY KEY, title VARCHAR(50), body MEDIUMTEXT, photo BLOB, tags JSON, doc JSON, price DECIMAL(30,2))")
	exec(t, `INSERT INTO dbz_articles VALUES (42, 'old', REPEAT('lorem ipsum ', 100000), x'0102', '["a","b"]', '{"k": 1}', 12.50)`)
	c := newConn(t, "dbz_articles", []string{"id"}, nil)
	const topic = "dbserver1.inventory.articles"
	var recs []rec
	for _, kv := range [][2]string{
		{"pg-articles-key.json", "pg-toast-update.json"},
		{"heartbeat-key.json", "heartbeat-value.json"},
		{"", "transaction-end.json"},
	} {
		if r, ok := debeziumRec(t, topic, kv[0], kv[1]); ok {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 {
		t.Fatalf("%d records, want the update", len(recs))
	}
	apply(t, c, mkBatch(topic, []string{"id"}, recs...))
	wantRows(t, "SELECT id, title, LENGTH(body), HEX(photo), tags, doc, price FROM dbz_articles",
		`42|new title|1200000|0102|["a","b"]|{"k": 1}|12.50`)

	recs = recs[:0]
	for _, kv := range [][2]string{{"pg-articles-key.json", "pg-toast-delete.json"}, {"pg-articles-key.json", ""}} {
		if r, ok := debeziumRec(t, topic, kv[0], kv[1]); ok {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 {
		t.Fatalf("%d records, want the delete", len(recs))
	}
	apply(t, c, mkBatch(topic, []string{"id"}, recs...))
	wantRows(t, "SELECT COUNT(*) FROM dbz_articles", "0")
}
