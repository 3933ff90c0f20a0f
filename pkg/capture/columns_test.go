package capture_test

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
)

// columnState applies a topic's events in order, keyed by the id column's text, holding col's
// text ("<absent>" when an event lacks the column).
func columnState(recs []record, col string) map[string]string {
	byPartitionOffset(recs)
	state := map[string]string{}
	for _, r := range recs {
		switch {
		case r.ev == nil:
		case r.ev.Op == change.OpDelete:
			delete(state, fmt.Sprint(r.ev.Before["id"]))
		default:
			v, ok := r.ev.After[col]
			state[fmt.Sprint(r.ev.After["id"])] = fmt.Sprint(v)
			if !ok {
				state[fmt.Sprint(r.ev.After["id"])] = "<absent>"
			}
		}
	}
	return state
}

// tableColumn reads id and col of a table, as the topic's decoded values print.
func (e *env) tableColumn(table, col string) map[string]string {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), fmt.Sprintf("SELECT id::text, %s FROM %s", col, table))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id string
		var v any
		if err := rows.Scan(&id, &v); err != nil {
			e.t.Fatal(err)
		}
		out[id] = fmt.Sprint(v)
	}
	return out
}

// readsAfterAnUpdate updates row 1 of public.m, waits for the update on its topic, and returns how
// many snapshot reads the topic holds by then.
func (e *env) readsAfterAnUpdate() int {
	e.t.Helper()
	e.exec(`UPDATE public.m SET n = 0 WHERE id = 1`)
	eventually(e.t, "the update in the topic", func() error {
		if got := columnState(e.tryEvents("wh.public.m"), "n")["1"]; got != "0" {
			return notYet("id 1: n = %s", got)
		}
		return nil
	})
	reads := 0
	for _, r := range e.tryEvents("wh.public.m") {
		if r.ev != nil && r.ev.Op == change.OpRead {
			reads++
		}
	}
	return reads
}

// TestColumnChangesReachTheTopic: a column added with a default, retyped with USING, or renamed
// changes every row without a change in the log (a renamed column is a new name with every row's
// value); capture re-snapshots the table, so the topic ends with every row's new value, then
// streams later changes as before.
func TestColumnChangesReachTheTopic(t *testing.T) {
	for _, tc := range []struct{ name, ddl, col string }{
		{"added with a default", "ALTER TABLE public.m ADD COLUMN extra text NOT NULL DEFAULT 'filled'", "extra"},
		{"retyped with USING", "ALTER TABLE public.m ALTER COLUMN n TYPE bigint USING n * 10", "n"},
		{"renamed", "ALTER TABLE public.m RENAME COLUMN s TO label", "label"},
		{"renamed, and a column added without a default", "ALTER TABLE public.m RENAME COLUMN s TO label; ALTER TABLE public.m ADD COLUMN note text", "label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.m")
			e.exec(`CREATE TABLE public.m (id int PRIMARY KEY, n int NOT NULL, s text);
				INSERT INTO public.m SELECT g, g, 's' || g FROM generate_series(1, 60) g`)
			e.start()
			e.waitEvents("wh.public.m", 60)
			e.exec(tc.ddl)
			eventually(t, "every row's "+tc.col+" in the topic", func() error {
				return diffStates(columnState(e.tryEvents("wh.public.m"), tc.col), e.tableColumn("public.m", tc.col))
			})
			e.exec(`UPDATE public.m SET n = 7 WHERE id = 3; DELETE FROM public.m WHERE id = 4`)
			eventually(t, "later changes in the topic", func() error {
				return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
			})
		})
	}
}

// TestColumnChangeWarnOnly: with on_column_change: warn, an added column is reported (naming
// the table, the column and the command that re-reads it) and no row is read again.
func TestColumnChangeWarnOnly(t *testing.T) {
	e := newEnv(t, "public.m")
	e.cfg.Source.Postgres.OnColumnChange = config.OnColumnChangeWarn
	core, logs := observer.New(zap.WarnLevel)
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
	e.exec(`CREATE TABLE public.m (id int PRIMARY KEY, n int NOT NULL);
		INSERT INTO public.m SELECT g, g FROM generate_series(1, 60) g`)
	e.start()
	e.waitEvents("wh.public.m", 60)
	e.exec("ALTER TABLE public.m ADD COLUMN extra text NOT NULL DEFAULT 'filled'")
	eventually(t, "the added column reported", func() error {
		for _, l := range logs.FilterMessageSnippet("columns added or retyped").All() {
			f := l.ContextMap()
			if f["table"] == "public.m" && fmt.Sprint(f["added"]) == "[extra]" {
				return nil
			}
		}
		return notYet("no warning naming public.m and extra")
	})
	// The warning is logged where a re-snapshot would have been queued: once it is out, an
	// update that arrives after it shows whether any row was read again.
	if reads := e.readsAfterAnUpdate(); reads != 60 {
		t.Errorf("%d snapshot reads, want the initial snapshot's 60 only", reads)
	}
	if got := columnState(e.tryEvents("wh.public.m"), "extra"); got["2"] != "<absent>" {
		t.Errorf("id 2: extra = %s, want it absent (not read again)", got["2"])
	}
}

// TestColumnChangesThatChangeNoValue: a column added without a default is NULL in every row
// (dbt's append_new_columns), and one retyped without a rewrite of the table keeps every value:
// nothing is read again, and the log says why.
func TestColumnChangesThatChangeNoValue(t *testing.T) {
	for _, tc := range []struct{ name, ddl, said string }{
		{"added without a default", "ALTER TABLE public.m ADD COLUMN note text", "columns added without a default"},
		{"widened", "ALTER TABLE public.m ALTER COLUMN s TYPE varchar(100)", "columns retyped without a rewrite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.m")
			core, logs := observer.New(zap.InfoLevel)
			e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
			e.exec(`CREATE TABLE public.m (id int PRIMARY KEY, n int NOT NULL, s varchar(50));
				INSERT INTO public.m SELECT g, g, 's' || g FROM generate_series(1, 60) g`)
			e.start()
			e.waitEvents("wh.public.m", 60)
			e.exec(tc.ddl)
			eventually(t, "the change seen", func() error {
				if logs.FilterMessageSnippet(tc.said).Len() == 0 {
					return notYet("not yet")
				}
				return nil
			})
			if reads := e.readsAfterAnUpdate(); reads != 60 || logs.FilterMessageSnippet("re-snapshotting the table").Len() != 0 {
				t.Errorf("%d snapshot reads, want the initial snapshot's 60 only, and no re-snapshot", reads)
			}
		})
	}
}

// TestQuotedNames: PostgreSQL takes any character in a quoted identifier, and warehouses fed from
// spreadsheets and SaaS exports have such names: a schema with capitals, a table and columns with
// spaces, accents and hyphens. Capture quotes them all, names the topic as Debezium does
// (illegal characters become '_'), and streams the table like any other.
func TestQuotedNames(t *testing.T) {
	e := newEnv(t, "Sales.order items")
	e.exec(`CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."order items" (id int PRIMARY KEY, "unit price" numeric(10,2), "Région-EU" text);
		INSERT INTO "Sales"."order items" SELECT g, g * 1.5, 'r' || g FROM generate_series(1, 30) g`)
	e.start()
	const topic = "wh.Sales.order_items"
	e.waitEvents(topic, 30)
	e.exec(`UPDATE "Sales"."order items" SET "unit price" = 99, "Région-EU" = 'moved' WHERE id = 2;
		DELETE FROM "Sales"."order items" WHERE id = 3`)
	for col, sql := range map[string]string{"unit price": `"unit price"::text`, "Région-EU": `"Région-EU"`} {
		eventually(t, col+" in the topic", func() error {
			return diffStates(columnState(e.tryEvents(topic), col), e.tableColumn(`"Sales"."order items"`, sql))
		})
	}
}
