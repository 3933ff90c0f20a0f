package postgres

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// debeziumRecord decodes a record of pkg/codec/testdata/debezium (key and value: file names, or
// literal JSON) and maps it with the identity mapping keyed on id, as a sink does. ok is false
// for what a sink skips: tombstones, heartbeats, transaction metadata.
func debeziumRecord(t *testing.T, key, value string) (r sink.Record, ok bool) {
	t.Helper()
	load := func(s string) []byte {
		if s == "" || strings.HasPrefix(s, "{") {
			return []byte(s)
		}
		b, err := os.ReadFile("../../pkg/codec/testdata/debezium/" + s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dec, err := codec.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.Decode(context.Background(), "dbserver1.inventory.articles", load(key), load(value))
	if err != nil || ev == nil {
		if err != nil {
			t.Fatal(err)
		}
		return sink.Record{}, false
	}
	m, err := mapping.Compile(mapping.Spec{Sink: "test", Key: []string{"id"}})
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
	return up(fields, "id"), true
}

// TestDebeziumPlaceholderLeavesColumnsAlone applies Debezium's UPDATE with unchanged TOASTed
// columns (the unavailable-value placeholder in text, bytea, array, jsonb and numeric columns):
// only title changes. Then its DELETE removes the row, and the tombstone after it, a heartbeat
// and transaction metadata are skipped.
func TestDebeziumPlaceholderLeavesColumnsAlone(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE articles (id int PRIMARY KEY, title text, body text, photo bytea, tags text[], doc jsonb, price numeric(30,2))`)
	big := strings.Repeat("lorem ipsum ", 100000)
	d.exec(`INSERT INTO articles VALUES (42, 'old', $1, '\x0102', '{a,b}', '{"k": 1}', 12.50)`, big)
	c := d.open(map[string]any{"table": "articles"}, "id")

	var recs []sink.Record
	for _, kv := range [][2]string{
		{"pg-articles-key.json", "pg-toast-update.json"},
		{"pg-articles-key.json", "pg-toast-update-schemaless.json"},
		{"heartbeat-key.json", "heartbeat-value.json"},
		{"", "transaction-begin.json"},
	} {
		if r, ok := debeziumRecord(t, kv[0], kv[1]); ok {
			if _, has := r.Fields["body"]; has {
				t.Fatalf("%s: body is written: %v", kv[1], r.Fields)
			}
			recs = append(recs, r)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want the 2 updates", len(recs))
	}
	apply(t, c, batch(3, recs...))
	d.wantRows(`SELECT id, title, length(body), photo, tags, doc, price FROM articles`,
		"42|new title|1200000|\\x0102|{a,b}|{\"k\": 1}|12.50")

	recs = recs[:0]
	for _, kv := range [][2]string{{"pg-articles-key.json", "pg-toast-delete.json"}, {"pg-articles-key.json", ""}} {
		if r, ok := debeziumRecord(t, kv[0], kv[1]); ok {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 || recs[0].Op != sink.OpDelete {
		t.Fatalf("records %+v, want one delete", recs)
	}
	apply(t, c, batch(5, recs...))
	d.wantRows(`SELECT count(*) FROM articles`, "0")
}
