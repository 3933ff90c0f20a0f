package postgres

import (
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// TestConformance runs the connector kit against a database of its own per case, twice: with
// the records as they come, and with every upsert marked as a row the source created, which
// sends batches of upserts by COPY (and, where a key is already there, falls back to upserts).
func TestConformance(t *testing.T) {
	t.Run("upsert", func(t *testing.T) { conformance(t, nil) })
	t.Run("copy", func(t *testing.T) {
		conformance(t, func(r sink.Record) sink.Record {
			if r.Op == sink.OpUpsert {
				r.Event = &change.Event{Op: change.OpCreate}
			}
			return r
		})
	})
}

func conformance(t *testing.T, translate func(sink.Record) sink.Record) {
	sinktest.Run(t, sinktest.Adapter{
		Translate: translate,
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			d := newDB(t, nil)
			d.exec(`CREATE TABLE public.items (id bigint PRIMARY KEY, name text, qty bigint, price numeric,
				note text, deleted_at timestamptz)`)
			p.With = map[string]any{"url": d.url, "table": "public.items"}
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any {
				return d.kitRows(t)
			}}
		},
		// qty is bigint: text there fails the whole batch's transaction.
		Poison: func(r *sink.Record) { r.Fields[sinktest.Qty] = "not a number" },
	})
}

// kitRows reads public.items as the kit's rows, every value as PostgreSQL's text.
func (d *testDB) kitRows(t testing.TB) map[string]map[string]any {
	t.Helper()
	rs, err := d.conn.Query(context.Background(),
		"SELECT id::text, name, qty::text, price::text, note, deleted_at::text FROM public.items")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]map[string]any{}
	for rs.Next() {
		var id string
		var name, qty, price, note, deleted *string
		if err := rs.Scan(&id, &name, &qty, &price, &note, &deleted); err != nil {
			t.Fatal(err)
		}
		out[id] = map[string]any{sinktest.Name: deref(name), sinktest.Qty: deref(qty), sinktest.Price: deref(price),
			sinktest.Note: deref(note), sinktest.DeletedAt: deref(deleted)}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// deref turns a nullable text into the kit's value: nil for NULL.
func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
