package capture_test

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const typesTable = `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.types (
	id int4 PRIMARY KEY, i2 int2, i8 int8, num numeric(20,6), f4 float4, f8 float8, b bool,
	t text, vc varchar(10), ch char(4), by bytea, d date, tm time, ts timestamp, tstz timestamptz,
	iv interval, u uuid, j json, jb jsonb, m mood, ai int4[], at text[], am mood[], an numeric[], ip inet)`

const typesRow = `(%d, -32768, 9223372036854775807, 12345678901234.123456, 1.5, 3.141592653589793, true,
	'héllo, "world"', 'varchar', 'ab', '\x00ff10', '2024-02-29', '13:45:06.123456',
	'2024-02-29 13:45:06.123456', '2024-02-29 13:45:06.123456+02', '1 year 2 mons 3 days 04:05:06.5',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": {"c": null}}', 'happy',
	'{1,NULL,3}', '{"x y","{z}",NULL}', '{sad,happy}', '{1.10,NULL}', '10.0.0.1')`

// typesWant is typesRow in the forms of package change.
func typesWant(id int32) change.Row {
	return change.Row{
		"id": id, "i2": int32(-32768), "i8": int64(math.MaxInt64), "num": "12345678901234.123456",
		"f4": float32(1.5), "f8": 3.141592653589793, "b": true, "t": `héllo, "world"`, "vc": "varchar",
		"ch": "ab  ", "by": []byte{0, 0xff, 0x10}, "d": int32(19782), "tm": int64(13*3600e6 + 45*60e6 + 6e6 + 123456),
		"ts":   time.Date(2024, 2, 29, 13, 45, 6, 123456000, time.UTC).UnixMicro(),
		"tstz": "2024-02-29T11:45:06.123456Z", "iv": "P1Y2M3DT4H5M6.5S",
		"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": `{"a": [1, 2]}`, "jb": `{"b": {"c": null}}`,
		"m": "happy", "ai": []any{int32(1), nil, int32(3)}, "at": []any{"x y", "{z}", nil},
		"am": []any{"sad", "happy"}, "an": []any{"1.10", nil},
		"ip": "10.0.0.1", // inet's output function; a cast to text would add the netmask (/32)
	}
}

// TestTypesRoundTrip checks every supported type and NULLs through both paths: the snapshot
// (row 1) and the stream (row 2), decoded back from Kafka.
func TestTypesRoundTrip(t *testing.T) {
	e := newEnv(t, "public.types")
	e.exec(typesTable)
	e.exec("INSERT INTO public.types VALUES " + strings.Replace(typesRow, "%d", "1", 1))
	e.exec("INSERT INTO public.types (id) VALUES (3)")
	e.start()
	e.waitEvents("wh.public.types", 2)
	e.exec("INSERT INTO public.types VALUES " + strings.Replace(typesRow, "%d", "2", 1))
	recs := e.waitEvents("wh.public.types", 3)

	got := map[int32]*change.Event{}
	for _, r := range recs {
		got[r.ev.After["id"].(int32)] = r.ev
	}
	for id, op := range map[int32]change.Op{1: change.OpRead, 2: change.OpCreate} {
		ev := got[id]
		if ev == nil {
			t.Fatalf("no event for id %d", id)
		}
		if ev.Op != op {
			t.Errorf("id %d: op %q, want %q", id, ev.Op, op)
		}
		want := typesWant(id)
		for col, w := range want {
			if g := ev.After[col]; !reflect.DeepEqual(g, w) {
				t.Errorf("id %d (%s) column %s = %#v (%T), want %#v (%T)", id, op, col, g, g, w, w)
			}
		}
	}
	nulls := got[3]
	if nulls == nil {
		t.Fatal("no event for the all-NULL row")
	}
	for col, v := range nulls.After {
		if col != "id" && v != nil {
			t.Errorf("NULL column %s decoded as %#v", col, v)
		}
	}
	if src := got[2].Source; src.TxID == 0 || src.LSN == 0 || src.Table != "types" || src.Schema != "public" || src.Snapshot != "false" {
		t.Errorf("stream source block incomplete: %+v", src)
	}
	if src := got[1].Source; src.Snapshot != "true" {
		t.Errorf("snapshot source block: %+v", src)
	}
}

// TestDecodeEdgeValues covers values whose text form needs care.
func TestDecodeEdgeValues(t *testing.T) {
	e := newEnv(t, "public.edge")
	e.exec(`CREATE TABLE public.edge (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, f float8, n numeric)`)
	e.start()
	e.exec(`INSERT INTO public.edge VALUES
		(1, 'infinity', '-infinity', 'infinity', 'NaN', 'NaN'),
		(2, '0044-03-15 BC', '1970-01-01 00:00:00', '2000-01-01 00:00:00+05:30', '-Infinity', '-0.000001')`)
	recs := e.waitEvents("wh.public.edge", 2)
	rows := map[int32]change.Row{}
	for _, r := range recs {
		rows[r.ev.After["id"].(int32)] = r.ev.After
	}
	if rows[1]["d"] != int32(math.MaxInt32) || rows[1]["ts"] != int64(math.MinInt64) || rows[1]["tz"] != "infinity" || rows[1]["n"] != "NaN" {
		t.Errorf("infinities: %#v", rows[1])
	}
	if f := rows[1]["f"].(float64); !math.IsNaN(f) {
		t.Errorf("NaN float decoded as %v", f)
	}
	bc := time.Date(-43, 3, 15, 0, 0, 0, 0, time.UTC).Unix() / 86400
	if rows[2]["d"] != int32(bc) || rows[2]["ts"] != int64(0) || rows[2]["tz"] != "1999-12-31T18:30:00.000000Z" || rows[2]["n"] != "-0.000001" {
		t.Errorf("edge values: %#v (want BC date %d)", rows[2], bc)
	}
	if f := rows[2]["f"].(float64); !math.IsInf(f, -1) {
		t.Errorf("-Infinity decoded as %v", f)
	}
}

// TestUpdateDeleteTruncate checks ops, before images, tombstones after deletes, key changes and
// truncates, with REPLICA IDENTITY DEFAULT and FULL.
func TestUpdateDeleteTruncate(t *testing.T) {
	e := newEnv(t, "public.d", "public.f")
	e.exec(`CREATE TABLE public.d (a int, b text, v int, PRIMARY KEY (a, b));
		CREATE TABLE public.f (id int PRIMARY KEY, v int); ALTER TABLE public.f REPLICA IDENTITY FULL`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.start()
	e.exec(`INSERT INTO public.d VALUES (1, 'x', 1); UPDATE public.d SET v = 2 WHERE a = 1;
		UPDATE public.d SET b = 'y' WHERE a = 1; DELETE FROM public.d WHERE a = 1;
		INSERT INTO public.f VALUES (7, 1); UPDATE public.f SET v = 2; DELETE FROM public.f; TRUNCATE public.f`)
	d := e.waitEvents("wh.public.d", 5)
	byPartitionOffset(d)
	var ops []string
	keyOf := map[string]string{} // key bytes → readable key, learnt from the events
	for _, r := range d {
		if r.ev == nil {
			ops = append(ops, "tomb:"+keyOf[string(r.key)])
			continue
		}
		keyOf[string(r.key)] = keyString(r)
		ops = append(ops, string(r.ev.Op)+":"+keyString(r))
	}
	wantOps := []string{"c:1/x", "u:1/x", "d:1/x", "tomb:1/x", "c:1/y", "d:1/y", "tomb:1/y"}
	if !sameMultiset(ops, wantOps) || !inOrder(ops, "c:1/x", "u:1/x", "d:1/x", "tomb:1/x") || !inOrder(ops, "c:1/y", "d:1/y", "tomb:1/y") {
		t.Errorf("ops on public.d = %v, want %v (in order per key)", ops, wantOps)
	}
	for _, r := range d {
		if r.ev != nil && r.ev.Op == change.OpUpdate && r.ev.Before != nil {
			t.Errorf("DEFAULT identity update without key change carries a before image: %v", r.ev.Before)
		}
		if r.ev != nil && r.ev.Op == change.OpDelete && (r.ev.Before["a"] != int32(1) || r.ev.Before["v"] != nil) {
			t.Errorf("DEFAULT identity delete before = %v, want key columns only", r.ev.Before)
		}
	}

	f := e.waitEvents("wh.public.f", 3+3) // the truncate once on each of the 3 partitions
	byPartitionOffset(f)
	var upd, del, trunc *change.Event
	copies, ids := map[int32]int{}, map[string]bool{}
	for _, r := range f {
		if r.ev == nil {
			continue
		}
		switch r.ev.Op {
		case change.OpUpdate:
			upd = r.ev
		case change.OpDelete:
			del = r.ev
		case change.OpTruncate:
			trunc = r.ev
			c, ok := kafka.TruncateCopyOf(r.rec)
			if !ok || c.Partitions != 3 || !bytes.Equal(r.rec.Key, kafka.TruncateKey) {
				t.Errorf("truncate copy on partition %d: headers %v, key %q", r.rec.Partition, r.rec.Headers, r.rec.Key)
			}
			copies[r.rec.Partition]++
			ids[c.ID] = true
		}
	}
	if len(copies) != 3 || copies[0] != 1 || copies[1] != 1 || copies[2] != 1 || len(ids) != 1 {
		t.Errorf("truncate copies per partition %v with ids %v, want one on each of 3 with one id", copies, ids)
	}
	if upd == nil || upd.Before["v"] != int32(1) || upd.After["v"] != int32(2) {
		t.Errorf("FULL identity update: %+v", upd)
	}
	if del == nil || del.Before["v"] != int32(2) || del.After != nil {
		t.Errorf("FULL identity delete: %+v", del)
	}
	if trunc == nil || trunc.Table.Name != "f" {
		t.Errorf("truncate event missing: %+v", trunc)
	}
}

func keyString(r record) string {
	k := r.ev.Key()
	if len(k) == 2 {
		return toString(k["a"]) + "/" + toString(k["b"])
	}
	return toString(k["id"])
}

// TestSchemaChangeMidStream adds, retypes and drops columns while capture runs.
func TestSchemaChangeMidStream(t *testing.T) {
	e := newEnv(t, "public.s")
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, a int)`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.start()
	e.exec(`INSERT INTO public.s VALUES (1, 10)`)
	e.waitEvents("wh.public.s", 1)
	e.exec(`ALTER TABLE public.s ADD COLUMN note text; INSERT INTO public.s VALUES (2, 20, 'hi')`)
	e.exec(`ALTER TABLE public.s ALTER COLUMN a TYPE bigint; INSERT INTO public.s VALUES (3, 30, 'big')`)
	e.exec(`ALTER TABLE public.s DROP COLUMN note; INSERT INTO public.s VALUES (4, 40)`)
	// The type change rewrote the table, so capture also re-snapshots it (on_column_change): the
	// inserts are what this test is about.
	var inserts []record
	eventually(t, "the 4 inserts", func() error {
		inserts = inserts[:0]
		for _, r := range e.tryEvents("wh.public.s") {
			if r.ev != nil && r.ev.Op == change.OpCreate {
				inserts = append(inserts, r)
			}
		}
		if len(inserts) < 4 {
			return notYet("%d inserts", len(inserts))
		}
		return nil
	})
	want := map[int32]change.Row{
		1: {"id": int32(1), "a": int32(10)},
		2: {"id": int32(2), "a": int32(20), "note": "hi"},
		3: {"id": int32(3), "a": int64(30), "note": "big"},
		4: {"id": int32(4), "a": int64(40)},
	}
	for _, r := range inserts {
		id := r.ev.After["id"].(int32)
		if !reflect.DeepEqual(r.ev.After, want[id]) {
			t.Errorf("row %d after schema change = %#v, want %#v", id, r.ev.After, want[id])
		}
	}
}

// TestToastUnchanged updates a row with a large TOASTed column left unchanged: the event must not
// carry a NULL or placeholder for it but list it as unchanged (DEFAULT), or carry the real value
// (FULL, from the old tuple).
func TestToastUnchanged(t *testing.T) {
	e := newEnv(t, "public.doc", "public.docfull")
	e.exec(`CREATE TABLE public.doc (id int PRIMARY KEY, v int, body text);
		CREATE TABLE public.docfull (id int PRIMARY KEY, v int, body text);
		ALTER TABLE public.docfull REPLICA IDENTITY FULL;
		ALTER TABLE public.doc ALTER COLUMN body SET STORAGE EXTERNAL;
		ALTER TABLE public.docfull ALTER COLUMN body SET STORAGE EXTERNAL`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.start()
	big := strings.Repeat("0123456789abcdef", 8192) // 128 KiB: stored out of line
	e.exec(`INSERT INTO public.doc VALUES (1, 1, $1)`, big)
	e.exec(`INSERT INTO public.docfull VALUES (1, 1, $1)`, big)
	e.exec(`UPDATE public.doc SET v = 2`)
	e.exec(`UPDATE public.docfull SET v = 2`)

	upd := func(topic string) *change.Event {
		for _, r := range e.waitEvents(topic, 2) {
			if r.ev.Op == change.OpUpdate {
				return r.ev
			}
		}
		t.Fatalf("%s: no update event", topic)
		return nil
	}
	d := upd("wh.public.doc")
	if d.After["v"] != int32(2) || d.After["body"] != nil || !reflect.DeepEqual(d.UnchangedToast, []string{"body"}) {
		t.Errorf("DEFAULT identity TOAST update: after=%v unchanged=%v, want body listed unchanged", d.After["v"], d.UnchangedToast)
	}
	f := upd("wh.public.docfull")
	if f.After["body"] != big || len(f.UnchangedToast) != 0 {
		t.Errorf("FULL identity TOAST update: body len %d unchanged=%v, want the real value", len(toString(f.After["body"])), f.UnchangedToast)
	}
}

// TestSnapshotConcurrentWrites snapshots a table while a writer increments every row's counter:
// per key the events must show consecutive counter values from the snapshot read on (no gap, no
// overlap), ending at the table's final state.
func TestSnapshotConcurrentWrites(t *testing.T) {
	e := newEnv(t, "public.c")
	e.exec(`CREATE TABLE public.c (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO public.c SELECT g FROM generate_series(1, 2000) g`)
	e.cfg.Source.Postgres.SnapshotChunk = 50
	ctx, cancel := context.WithCancel(context.Background())
	writerDone := make(chan error, 1)
	go func() {
		conn, err := e.pg.Connect(ctx, "postgres")
		if err != nil {
			writerDone <- err
			return
		}
		defer conn.Close(context.Background())
		for i := 0; ctx.Err() == nil && i < 400; i++ {
			if _, err := conn.Exec(ctx, `UPDATE public.c SET n = n + 1 WHERE id % 7 = $1`, i%7); err != nil && ctx.Err() == nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	time.Sleep(100 * time.Millisecond) // let some writes land before the slot exists
	e.start()
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	cancel()

	final := map[int32]int32{}
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(context.Background(), "SELECT id, n FROM public.c")
	for rows.Next() {
		var id, n int32
		_ = rows.Scan(&id, &n)
		final[id] = n
	}
	conn.Close(context.Background())

	eventually(t, "every key reaches its final counter", func() error {
		recs := e.tryEvents("wh.public.c")
		byPartitionOffset(recs)
		seen := map[int32][]int32{}
		reads := 0
		for _, r := range recs {
			id, n := r.ev.After["id"].(int32), r.ev.After["n"].(int32)
			if r.ev.Op == change.OpRead {
				reads++
				if len(seen[id]) > 0 {
					return notYetf(t, "key %d: snapshot read after streamed changes", id)
				}
			}
			seen[id] = append(seen[id], n)
		}
		for id, want := range final {
			ns := seen[id]
			if len(ns) == 0 || ns[len(ns)-1] != want {
				return notYet("key %d: counters %v, final %d", id, ns, want)
			}
			for i := 1; i < len(ns); i++ {
				if ns[i] != ns[i-1]+1 {
					t.Fatalf("key %d: counters %v: gap or overlap between snapshot and stream", id, ns)
				}
			}
		}
		if reads != len(final) {
			t.Fatalf("%d snapshot reads for %d rows", reads, len(final))
		}
		return nil
	})
}

func notYetf(t *testing.T, format string, args ...any) error {
	t.Helper()
	t.Fatalf(format, args...)
	return nil
}

// TestSlotAdvancesOnlyAfterAckAndWhenIdle checks the capture checkpoint: the slot's confirmed
// position moves once records are acknowledged, and keeps moving while the captured table is
// idle but the rest of the database writes WAL.
func TestSlotAdvancesOnlyAfterAckAndWhenIdle(t *testing.T) {
	e := newEnv(t, "public.a")
	e.exec(`CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.other (id int)`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.start()
	e.exec(`INSERT INTO public.a VALUES (1)`)
	e.waitEvents("wh.public.a", 1)
	first := ""
	eventually(t, "slot confirms the insert", func() error {
		if first = e.slotLSN(); first == "" || first == "0/0" {
			return notYet("slot at %q", first)
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		e.exec(`INSERT INTO public.other SELECT generate_series(1, 1000)`)
	}
	eventually(t, "idle slot advances past other tables' WAL", func() error {
		now := e.slotLSN()
		if lsnLess(first, now) {
			return nil
		}
		return notYet("slot still at %s", now)
	})
}

// TestBrokerOutage stops the broker mid-stream: capture waits with bounded memory, the slot does
// not move past unacknowledged changes, and every change arrives once the broker is back.
func TestBrokerOutage(t *testing.T) {
	e := newEnv(t, "public.o")
	e.exec(`CREATE TABLE public.o (id int PRIMARY KEY)`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.MaxInFlight = 100
	e.start()
	e.exec(`INSERT INTO public.o VALUES (0)`)
	e.waitEvents("wh.public.o", 1)
	eventually(t, "slot confirms the first insert", func() error {
		if e.slotLSN() == "" {
			return notYet("no position")
		}
		return nil
	})
	e.kf.Stop()
	// The slot may still move over WAL that holds nothing for us, but never past the start of
	// the transaction whose records Kafka has not acknowledged.
	beforeInsert := e.currentLSN()
	e.exec(`INSERT INTO public.o SELECT generate_series(1, 1000)`)
	time.Sleep(2 * time.Second)
	if now := e.slotLSN(); lsnLess(beforeInsert, now) {
		t.Errorf("slot moved to %s, past the unacknowledged transaction at %s, while the broker was down", now, beforeInsert)
	}
	if err := e.kf.Start(); err != nil {
		t.Fatal(err)
	}
	recs := e.waitEvents("wh.public.o", 1001)
	seen := map[int32]bool{}
	for _, r := range recs {
		seen[r.ev.After["id"].(int32)] = true
	}
	if len(seen) != 1001 {
		t.Errorf("%d distinct ids after the outage, want 1001", len(seen))
	}
}

// TestRowLevelSecurityIsRefused: a table whose row-level security policies apply to the capture
// role would be snapshotted partly (only the rows the policies show), while PostgreSQL publishes
// every row's changes. Capture refuses to start, naming the table, the role and the fix; with
// BYPASSRLS it captures every row.
func TestRowLevelSecurityIsRefused(t *testing.T) {
	e := newEnv(t, "public.rls")
	e.exec(`CREATE TABLE public.rls (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.rls SELECT g, 'v' || g FROM generate_series(1, 10) g;
		ALTER TABLE public.rls ENABLE ROW LEVEL SECURITY; CREATE POLICY few ON public.rls USING (id <= 5);
		CREATE ROLE capturer LOGIN REPLICATION; GRANT SELECT ON public.rls TO capturer;
		CREATE PUBLICATION backflow FOR TABLE public.rls`)
	e.cfg.Source.Postgres.URL = strings.Replace(e.cfg.Source.Postgres.URL, "postgres@", "capturer@", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := capture.New(e.cfg).Run(ctx)
	for _, w := range []string{"public.rls", "row-level security", "capturer", "BYPASSRLS"} {
		if err == nil || !strings.Contains(err.Error(), w) || !capture.IsSetupError(err) {
			t.Fatalf("capture ended with %v; want a setup error mentioning %q", err, w)
		}
	}
	e.exec(`ALTER ROLE capturer BYPASSRLS`)
	e.start()
	e.converges("wh.public.rls", "public.rls")
}

// TestSetupErrors checks that each misconfiguration gives one clear error saying what to do.
func TestSetupErrors(t *testing.T) {
	kf := testenv.NewKafka(t)
	replica := testenv.NewPostgres(t, testenv.PGConf("wal_level", "replica"))
	pg := testenv.NewPostgres(t)
	if err := pg.Exec(context.Background(), `CREATE TABLE public.nopk (v int); CREATE TABLE public.ok (id int PRIMARY KEY);
		CREATE VIEW public.v AS SELECT * FROM public.ok; CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM public.ok;
		CREATE ROLE weak LOGIN`); err != nil {
		t.Fatal(err)
	}
	weakURL := strings.Replace(pg.URL("postgres"), "postgres@", "weak@", 1)
	cases := []struct {
		name, url, table string
		brokers          []string
		want             []string
	}{
		{"wal_level", replica.URL("postgres"), "public.ok", kf.Brokers(), []string{"wal_level", "logical"}},
		{"missing table", pg.URL("postgres"), "public.nope", kf.Brokers(), []string{"public.nope", "not found"}},
		{"view", pg.URL("postgres"), "public.v", kf.Brokers(), []string{"public.v is a view", "logical replication", "model"}},
		{"materialized view", pg.URL("postgres"), "public.mv", kf.Brokers(), []string{"public.mv is a materialized view", "model"}},
		{"no primary key", pg.URL("postgres"), "public.nopk", kf.Brokers(), []string{"public.nopk", "no primary key", "source.postgres.keys"}},
		{"no replication privilege", weakURL, "public.ok", kf.Brokers(), []string{"weak", "REPLICATION"}},
		{"database unreachable", "postgres://postgres@127.0.0.1:1/postgres", "public.ok", kf.Brokers(), []string{"connect to warehouse"}},
		{"broker unreachable", pg.URL("postgres"), "public.ok", []string{"127.0.0.1:1"}, []string{"Kafka"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pipeline(tc.url, tc.brokers, tc.table)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := capture.New(cfg).Run(ctx)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
