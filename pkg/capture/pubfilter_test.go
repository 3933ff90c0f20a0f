package capture_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestPublicationFilters: a publication created by a DBA with a column list (personal data kept
// out) and a row filter. PostgreSQL applies both to the changes it sends but not to a SELECT, so
// a snapshot that read the whole table left rows in the targets that no change ever updated or
// deleted, and the columns kept out in Kafka. The snapshot reads what the publication publishes;
// a filter changed while capture runs, or while it is stopped, makes PostgreSQL publish other
// rows with nothing in the log, and capture refreshes the table in full.
func TestPublicationFilters(t *testing.T) {
	e := newEnv(t, "public.items")
	e.exec(`CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL, secret text);
		INSERT INTO public.items SELECT g, 'v' || g, 'secret' || g FROM generate_series(1, 50) g;
		CREATE PUBLICATION backflow FOR TABLE public.items (id, v) WHERE (id > 20)`)
	stop := e.start()
	e.converges("wh.public.items", "public.items WHERE id > 20")
	noSecrets(t, e.tryEvents("wh.public.items"))

	// In the stream, PostgreSQL applies the filter itself: an update taking a row out of it is a
	// delete, one bringing a row in an insert.
	e.exec(`UPDATE public.items SET v = 'out' WHERE id = 5; UPDATE public.items SET v = 'in' WHERE id = 25;
		UPDATE public.items SET id = 0 WHERE id = 30; UPDATE public.items SET id = 70 WHERE id = 6;
		INSERT INTO public.items VALUES (60, 'new', 'secret')`)
	e.converges("wh.public.items", "public.items WHERE id > 20")

	e.exec(`ALTER PUBLICATION backflow SET TABLE public.items (id, v) WHERE (id > 40)`)
	e.converges("wh.public.items", "public.items WHERE id > 40")

	if err := stop(); err != nil {
		t.Fatalf("capture stopped with %v, want nil", err)
	}
	e.exec(`ALTER PUBLICATION backflow SET TABLE public.items (id, v); UPDATE public.items SET v = 'stopped' WHERE id = 2`)
	e.start()
	e.converges("wh.public.items", "public.items")
	noSecrets(t, e.tryEvents("wh.public.items"))
}

// noSecrets fails the test when a record carries the secret column.
func noSecrets(t *testing.T, recs []record) {
	t.Helper()
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		if _, ok := r.ev.After["secret"]; ok {
			t.Fatalf("a record carries the column the publication leaves out: %v", r.ev.After)
		}
		if s := fmt.Sprint(r.ev.After); strings.Contains(s, "secret") {
			t.Fatalf("a record carries a value of the column the publication leaves out: %s", s)
		}
	}
}

// TestPublicationFilterWithoutKey: a column list that leaves a key column out (possible for a
// publication of inserts only) stops the snapshot with an error naming the column and the fix,
// rather than publishing records without their key.
func TestPublicationFilterWithoutKey(t *testing.T) {
	e := newEnv(t, "public.items")
	e.exec(`CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.items VALUES (1, 'a');
		CREATE PUBLICATION backflow FOR TABLE public.items (v) WITH (publish = 'insert')`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t))).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `leaves key column "id" out of its column list`) {
		t.Fatalf("capture ended with %v, want the key column left out named", err)
	}
}

// TestPublicationOperations: a publication that leaves operations out (publish = 'insert,
// update', set by a DBA) sends no delete or truncate: a TRUNCATE and INSERT reload leaves the old
// rows in the targets. Capture reports it (error log, metric, status) and, once the publication
// publishes them again, while capture runs or while it is stopped, refreshes every table in full,
// so that the topic ends equal to the table.
func TestPublicationOperations(t *testing.T) {
	e := newEnv(t, "public.items")
	e.exec(`CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 50) g;
		CREATE PUBLICATION backflow FOR TABLE public.items WITH (publish = 'insert, update')`)
	m := observe.NewMetrics()
	stop := e.startWith(m)
	e.converges("wh.public.items", "public.items")
	metricIs(t, m, "backflow_capture_unpublished_operations", 2) // delete, truncate
	if p := e.statusProblems(); !strings.Contains(p, "does not publish delete, truncate") {
		t.Fatalf("status problems %q: want the unpublished operations named", p)
	}

	e.exec(`DELETE FROM public.items WHERE id <= 5; UPDATE public.items SET v = 'updated' WHERE id = 6`)
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`)
	e.converges("wh.public.items", "public.items")
	metricIs(t, m, "backflow_capture_unpublished_operations", 0)

	// Left out while capture runs, published again while it is stopped.
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, truncate')`)
	metricIs(t, m, "backflow_capture_unpublished_operations", 1)
	e.exec(`DELETE FROM public.items WHERE id <= 10`)
	if err := stop(); err != nil {
		t.Fatalf("capture stopped with %v, want nil", err)
	}
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`)
	e.start()
	e.converges("wh.public.items", "public.items")
}

// TestPublicationFilterUnderSchema: a table that a publication lists with a row filter and also
// publishes through its schema (FOR TABLES IN SCHEMA) has every row published, as PostgreSQL ORs
// the two: the snapshot reads every row too.
func TestPublicationFilterUnderSchema(t *testing.T) {
	e := newEnv(t, "app.*")
	e.exec(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO app.items SELECT g, 'v' || g FROM generate_series(1, 30) g;
		CREATE PUBLICATION backflow FOR TABLES IN SCHEMA app, TABLE app.items WHERE (id > 20)`)
	e.start()
	e.converges("wh.app.items", "app.items")
	e.exec(`UPDATE app.items SET v = 'changed' WHERE id IN (1, 25)`)
	e.converges("wh.app.items", "app.items")
}
