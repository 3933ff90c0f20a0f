package redis

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// TestConformance runs the connector kit in both modes, each case under a key prefix of its own.
func TestConformance(t *testing.T) {
	for _, mode := range []string{ModeHash, ModeJSON} {
		t.Run(mode, func(t *testing.T) {
			sinktest.Run(t, sinktest.Adapter{
				Open: func(t *testing.T, p sink.Params) sinktest.Opened {
					rdb := direct(t)
					prefix := testPrefix(t, rdb) + "item:"
					p.With = map[string]any{"url": redisURL(), "key": prefix + "{id}", "mode": mode}
					c, err := New(context.Background(), p)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = c.Close() })
					return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any {
						return kitRows(t, rdb, prefix, mode)
					}}
				},
				// A value JSON cannot encode fails that record alone (in a PartialError).
				Poison: func(r *sink.Record) { r.Fields[sinktest.Note] = func() {} },
			})
		})
	}
}

// kitRows reads the keys under prefix as the kit's rows.
func kitRows(t testing.TB, rdb *goredis.Client, prefix, mode string) map[string]map[string]any {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, key := range keys {
		row := map[string]any{}
		if mode == ModeHash {
			h, err := rdb.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatalf("HGETALL %s: %v", key, err)
			}
			for f, v := range h {
				row[f] = v
			}
		} else {
			row = jsonRow(t, rdb.Get(ctx, key).Val())
		}
		out[strings.TrimPrefix(key, prefix)] = row
	}
	return out
}

// jsonRow decodes a json-mode value, numbers as their exact text.
func jsonRow(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	row := map[string]any{}
	if err := dec.Decode(&row); err != nil {
		t.Fatalf("stored JSON %q: %v", s, err)
	}
	return row
}
