package redis

import (
	"context"
	"os"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// debeziumRecord decodes a record of pkg/codec/testdata/debezium (key and value: file names; an
// empty value is a tombstone) and maps it with the identity mapping keyed on id, as a sink does.
// ok is false for what a sink skips.
func debeziumRecord(t *testing.T, key, value string) (r sink.Record, ok bool) {
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
	ev, err := dec.Decode(context.Background(), "dbserver1.inventory.articles", load(key), load(value))
	if err != nil {
		t.Fatal(err)
	}
	if ev == nil {
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
	return upsert(fields, "id"), true
}

// TestDebeziumPlaceholderLeavesFieldsAlone applies Debezium's UPDATE with unchanged TOASTed
// columns to a hash: only title changes. Then its DELETE removes the key; the tombstone and a
// heartbeat are skipped.
func TestDebeziumPlaceholderLeavesFieldsAlone(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "article:{id}"}, "id")
	before := map[string]string{"id": "42", "title": "old", "body": "long toasted text", "photo": "\x01\x02",
		"tags": `["a","b"]`, "doc": `{"k": 1}`, "price": "12.50"}
	if err := rdb.HSet(context.Background(), p+"article:42", before).Err(); err != nil {
		t.Fatal(err)
	}
	var recs []sink.Record
	for _, kv := range [][2]string{
		{"pg-articles-key.json", "pg-toast-update.json"},
		{"heartbeat-key.json", "heartbeat-value.json"},
	} {
		if r, ok := debeziumRecord(t, kv[0], kv[1]); ok {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 {
		t.Fatalf("%d records, want the update", len(recs))
	}
	mustApply(t, c, recs...)
	want := before
	want["title"] = "new title"
	assertMap(t, hgetall(t, rdb, p+"article:42"), want)

	recs = recs[:0]
	for _, kv := range [][2]string{{"pg-articles-key.json", "pg-toast-delete.json"}, {"pg-articles-key.json", ""}} {
		if r, ok := debeziumRecord(t, kv[0], kv[1]); ok {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 || recs[0].Op != sink.OpDelete {
		t.Fatalf("records %+v, want one delete", recs)
	}
	mustApply(t, c, recs...)
	if n := rdb.Exists(context.Background(), p+"article:42").Val(); n != 0 {
		t.Fatalf("key still exists after the delete")
	}
}
