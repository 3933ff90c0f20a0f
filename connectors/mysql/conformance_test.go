package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

var kitTables atomic.Int64

// TestConformance runs the connector kit against a table of its own per case.
func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			table := fmt.Sprintf("kit_items_%d", kitTables.Add(1))
			exec(t, "CREATE TABLE "+quoteIdent(table)+` (id BIGINT PRIMARY KEY, name TEXT, qty BIGINT,
				price DECIMAL(40,9), note TEXT, deleted_at DATETIME(6)) CHARACTER SET utf8mb4`)
			p.With = map[string]any{"dsn": dsn(), "table": table}
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any {
				return kitRows(t, table)
			}}
		},
		// qty is BIGINT and the connector's sessions are strict: text there fails the batch.
		Poison: func(r *sink.Record) { r.Fields[sinktest.Qty] = "not a number" },
	})
}

// kitRows reads a kit table as the kit's rows, every value as the server's text.
func kitRows(t testing.TB, table string) map[string]map[string]any {
	t.Helper()
	rs, err := admin.QueryContext(context.Background(), "SELECT id, name, qty, price, note, deleted_at FROM "+
		quoteIdent(testDB)+"."+quoteIdent(table))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]map[string]any{}
	for rs.Next() {
		var id string
		var name, qty, price, note, deleted sql.NullString
		if err := rs.Scan(&id, &name, &qty, &price, &note, &deleted); err != nil {
			t.Fatal(err)
		}
		out[id] = map[string]any{sinktest.Name: nullable(name), sinktest.Qty: nullable(qty),
			sinktest.Price: nullable(price), sinktest.Note: nullable(note), sinktest.DeletedAt: nullable(deleted)}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func nullable(s sql.NullString) any {
	if !s.Valid {
		return nil
	}
	return s.String
}
