package postgres

import (
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// TestConformance runs the connector kit against a database of its own per case.
func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Adapter{
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
