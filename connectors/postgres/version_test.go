package postgres

import (
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// versioned is an upsert carrying the source LSN of its change in the version column, as the
// runtime writes it when the sink sets version_column.
func versioned(id int32, v string, lsn int64) sink.Record {
	r := up(map[string]any{"id": id, "v": v, "src_lsn": lsn}, "id")
	r.Event = &change.Event{Source: change.Source{LSN: lsn}}
	return r
}

func TestVersionColumnLastWriteWins(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text, src_lsn bigint)`)
	c, err := New(context.Background(), sink.Params{Sink: "test", With: map[string]any{"url": d.url, "table": "t"},
		Key: []string{"id"}, VersionColumn: "src_lsn"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	apply(t, c.(*Connector), batch(1, versioned(1, "new", 50), versioned(2, "new", 50)))
	// An older change (a replay) never replaces a newer row; an equal or newer one does.
	apply(t, c.(*Connector), batch(2, versioned(1, "old", 40), versioned(2, "newer", 60)))
	d.wantRows(`SELECT id, v, src_lsn FROM t ORDER BY id`, "1|new|50", "2|newer|60")

	// A truncate removes what was written before it, not what other partitions wrote after it.
	tr := truncate()
	tr.Event = &change.Event{Source: change.Source{LSN: 55}}
	apply(t, c.(*Connector), batch(3, tr))
	d.wantRows(`SELECT id, v, src_lsn FROM t ORDER BY id`, "2|newer|60")

	// A delete removes a row only when the row is not newer than the delete; a delete without a
	// version, or a row without one, goes through.
	apply(t, c.(*Connector), batch(4, versioned(3, "new", 70), versioned(4, "new", 20)))
	d.exec(`INSERT INTO t VALUES (5, 'unversioned', NULL)`)
	deleted := func(id int32, lsn int64) sink.Record {
		r := del(map[string]any{"id": id})
		if lsn > 0 {
			r.Event = &change.Event{Op: change.OpDelete, Source: change.Source{LSN: lsn}}
		}
		return r
	}
	apply(t, c.(*Connector), batch(5, deleted(2, 65), deleted(3, 65), deleted(4, 0), deleted(5, 1)))
	d.wantRows(`SELECT id, v, src_lsn FROM t ORDER BY id`, "3|new|70")
}

func TestVersionColumnValidation(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	for _, vc := range []string{"nope", "v"} {
		_, err := New(context.Background(), sink.Params{Sink: "test", With: map[string]any{"url": d.url, "table": "t"},
			Key: []string{"id"}, VersionColumn: vc})
		if err == nil {
			t.Errorf("version column %q accepted", vc)
		}
	}
}
