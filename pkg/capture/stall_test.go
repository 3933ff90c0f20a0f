package capture_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// dlq returns the records of capture's dead-letter topic, none while it does not exist.
func (e *env) dlq() []*kgo.Record {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), e.cfg.CaptureDLQTopic())
	if err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC") {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// waitDLQ waits for n dead letters.
func (e *env) waitDLQ(n int) []*kgo.Record {
	e.t.Helper()
	var recs []*kgo.Record
	eventually(e.t, "dead letters", func() error {
		if recs = e.dlq(); len(recs) < n {
			return notYet("%d dead letters, want %d", len(recs), n)
		}
		return nil
	})
	return recs
}

// TestWideRowsArriveIntact writes rows of several MB: one that fits the topic as it is, and one
// larger than the topic's limit that fits once compressed; both arrive whole.
func TestWideRowsArriveIntact(t *testing.T) {
	e := newEnv(t, "public.wide")
	e.exec(`CREATE TABLE public.wide (id int PRIMARY KEY, body text)`)
	e.cfg.Kafka.Topics.MaxMessageBytes = 4 << 20
	e.start()
	// Random hex, each run of it written four times: it compresses well below the limit with any
	// codec and level (plain random hex would not with zstd's fastest level, the regular
	// producer's), and it is still not a repetition of one short string.
	e.exec(`INSERT INTO public.wide SELECT 1, string_agg(repeat(md5(g::text || random()::text), 4), '') FROM generate_series(1, 40000) g`) // 5 MB
	e.exec(`INSERT INTO public.wide SELECT 2, string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 60000) g`)            // 1.9 MB
	e.exec(`INSERT INTO public.wide VALUES (3, 'small')`)
	recs := e.waitEvents("wh.public.wide", 3)
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, r := range recs {
		id := r.ev.After["id"].(int32)
		body := r.ev.After["body"].(string)
		var want string
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT md5(body), length(body) FROM public.wide WHERE id = $1", id).Scan(&want, &n); err != nil {
			t.Fatal(err)
		}
		if sum := md5.Sum([]byte(body)); hex.EncodeToString(sum[:]) != want || len(body) != n {
			t.Errorf("row %d: %d bytes on the topic, %d in the table, or their md5 differ", id, len(body), n)
		}
	}
	if d := e.dlq(); len(d) != 0 {
		t.Errorf("%d dead letters, want none", len(d))
	}
}

// TestRowTooLargeGoesToDLQ writes a row that does not fit the topic even compressed: it lands in
// the capture dead-letter topic with its key, table, LSN and reason, the rows after it keep
// flowing, and the slot moves past it.
func TestRowTooLargeGoesToDLQ(t *testing.T) {
	e := newEnv(t, "public.blobs")
	e.exec(`CREATE TABLE public.blobs (id int PRIMARY KEY, data bytea)`)
	e.cfg.Kafka.Topics.MaxMessageBytes = 64 << 10
	e.start()
	e.exec(`INSERT INTO public.blobs VALUES (1, 'small')`)
	// 200 KB of random bytes: no compression brings them under 64 KiB.
	e.exec(`INSERT INTO public.blobs SELECT 2, decode(string_agg(md5(g::text || random()::text), ''), 'hex') FROM generate_series(1, 12500) g`)
	after := e.currentLSN()
	e.exec(`INSERT INTO public.blobs VALUES (3, 'after'); UPDATE public.blobs SET data = 'again' WHERE id = 1`)

	recs := e.waitEvents("wh.public.blobs", 3)
	var ids []int32
	for _, r := range recs {
		if r.ev != nil {
			ids = append(ids, r.ev.After["id"].(int32))
		}
	}
	if !sameMultiset(intStrings(ids), []string{"1", "3", "1"}) {
		t.Errorf("topic has rows %v, want 1, 3 and the update of 1", ids)
	}
	dl := e.waitDLQ(1)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d := dl[0]
	for key, want := range map[string]string{"backflow.table": "public.blobs", "backflow.topic": "wh.public.blobs", "backflow.op": "c"} {
		if got, _ := header(d, key); got != want {
			t.Errorf("header %s = %q, want %q", key, got, want)
		}
	}
	if reason, _ := header(d, "backflow.reason"); !strings.HasPrefix(reason, "message_too_large: ") {
		t.Errorf("reason %q, want message_too_large", reason)
	}
	if lsn, _ := header(d, "backflow.lsn"); lsn == "" || lsn == "0/0" || !lsnLess(lsn, after) && lsn != after {
		t.Errorf("lsn header %q, want the row's transaction, before %s", lsn, after)
	}
	if n, _ := header(d, "backflow.value_bytes"); len(d.Value) != 0 || atoi(n) < 200_000 {
		t.Errorf("value of %d bytes, value_bytes %q: want the value left out and its size said", len(d.Value), n)
	}
	if key, _ := header(d, "backflow.key"); key == "" || string(d.Key) != key {
		t.Errorf("dead letter keyed %x, key header %x: want the row's key in both", d.Key, key)
	}
	eventually(t, "slot past the large row", func() error {
		if lsn := e.slotLSN(); !lsnLess(after, lsn) {
			return notYet("slot at %s, large row before %s", lsn, after)
		}
		return nil
	})
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func intStrings(ns []int32) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = toString(n)
	}
	return out
}

// TestDatesBeyondYear9999 sends dates and timestamps Go's time layouts cannot parse, through the
// snapshot (row 1) and the stream (rows 2 and 3).
func TestDatesBeyondYear9999(t *testing.T) {
	e := newEnv(t, "public.dates")
	e.exec(`CREATE TABLE public.dates (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)`)
	e.exec(`INSERT INTO public.dates VALUES (1, '10000-01-01', '12345-06-07 08:09:10.5', '10000-01-01 00:00:00+00')`)
	e.start()
	e.exec(`INSERT INTO public.dates VALUES (2, '5874897-12-31', '294000-01-01 00:00:00', '0044-03-15 12:00:00+00 BC'),
		(3, 'infinity', 'infinity', '-infinity'), (4, '-infinity', '-infinity', 'infinity')`)
	recs := e.waitEvents("wh.public.dates", 4)
	day := func(y int) int32 { return int32(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400) }
	want := map[int32]change.Row{
		1: {"d": day(10000), "ts": time.Date(12345, 6, 7, 8, 9, 10, 5e8, time.UTC).UnixMicro(), "tz": "+10000-01-01T00:00:00.000000Z"},
		2: {"d": int32(2145042905), "ts": int64(9215576668800000000), "tz": "-0043-03-15T12:00:00.000000Z"},
		3: {"d": int32(math.MaxInt32), "ts": int64(math.MaxInt64), "tz": "-infinity"},
		4: {"d": int32(math.MinInt32), "ts": int64(math.MinInt64), "tz": "infinity"},
	}
	for _, r := range recs {
		id := r.ev.After["id"].(int32)
		for col, w := range want[id] {
			if g := r.ev.After[col]; g != w {
				t.Errorf("row %d %s = %#v, want %#v", id, col, g, w)
			}
		}
	}
	if d := e.dlq(); len(d) != 0 {
		t.Errorf("%d dead letters, want none", len(d))
	}
}

// TestDroppedRelation drops a table after its changes were written and before capture read
// them: the relation's key comes from its Relation message, and the changes arrive.
func TestDroppedRelation(t *testing.T) {
	e := newEnv(t, "public.*")
	e.exec(`CREATE TABLE public.keep (id int PRIMARY KEY); CREATE TABLE public.gone (id int PRIMARY KEY, v text)`)
	stop := e.start()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO public.gone VALUES (1, 'a'), (2, 'b'); UPDATE public.gone SET v = 'c' WHERE id = 1; DELETE FROM public.gone WHERE id = 2`)
	e.exec(`DROP TABLE public.gone; INSERT INTO public.keep VALUES (1)`)
	e.start()
	e.waitEvents("wh.public.keep", 1)
	recs := e.waitEvents("wh.public.gone", 4)
	var ops []string
	for _, r := range recs {
		if r.ev != nil {
			ops = append(ops, string(r.ev.Op)+toString(r.ev.Key()["id"]))
		}
	}
	if !sameMultiset(ops, []string{"c1", "c2", "u1", "d2"}) {
		t.Errorf("changes of the dropped table: %v", ops)
	}
}

// TestKeyProblemsRefusedAtStart: a configured key that can be NULL, and one outside the replica
// identity, are setup errors naming the table, the columns and the fix.
func TestKeyProblemsRefusedAtStart(t *testing.T) {
	e := newEnv(t, "public.events_log")
	e.exec(`CREATE TABLE public.events_log (event_id text, at int)`)
	e.cfg.Source.Postgres.Keys = map[string][]string{"public.events_log": {"event_id"}}
	run := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t))).RunWithRetry(ctx)
	}
	err := run()
	if !capture.IsSetupError(err) || !strings.Contains(err.Error(), "public.events_log") || !strings.Contains(err.Error(), "event_id can be NULL") {
		t.Fatalf("nullable key: %v, want a setup error naming the table and column", err)
	}
	e.exec(`ALTER TABLE public.events_log ALTER COLUMN event_id SET NOT NULL`)
	err = run()
	if !capture.IsSetupError(err) || !strings.Contains(err.Error(), "no replica identity") || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("key without replica identity: %v, want a setup error with the fix", err)
	}
	e.exec(`ALTER TABLE public.events_log ADD COLUMN id int PRIMARY KEY`)
	err = run()
	if !capture.IsSetupError(err) || !strings.Contains(err.Error(), "not within its replica identity (id)") {
		t.Fatalf("key beside the primary key: %v, want a setup error", err)
	}
	e.exec(`ALTER TABLE public.events_log REPLICA IDENTITY FULL`)
	e.start()
	// A NULL that reaches capture anyway goes to the dead-letter topic, and capture goes on.
	e.exec(`ALTER TABLE public.events_log ALTER COLUMN event_id DROP NOT NULL`)
	e.exec(`INSERT INTO public.events_log VALUES (NULL, 1, 1), ('paid', 2, 2)`)
	if ev := e.waitEvents("wh.public.events_log", 1)[0].ev; ev.After["event_id"] != "paid" {
		t.Errorf("event after the NULL key: %v", ev.After)
	}
	d := e.waitDLQ(1)[0]
	if reason, _ := header(d, "backflow.reason"); !strings.HasPrefix(reason, "null_key: ") || !strings.Contains(reason, "event_id") {
		t.Errorf("reason %q, want null_key naming the column", reason)
	}
}

// TestUndecodableChangeParked: a change capture cannot decode (a timestamp past what
// microseconds since 1970 hold in 64 bits) would fail every run at its WAL record: it is parked
// in the dead-letter topic at once, reason undecodable, with the raw row, and the changes after
// it flow. (Other failures of a record are parked after three runs: TestGuardParksAfterRuns.)
func TestUndecodableChangeParked(t *testing.T) {
	e := newEnv(t, "public.ev")
	e.exec(`CREATE TABLE public.ev (id int PRIMARY KEY, at timestamp)`)
	e.cfg.Source.Postgres.Snapshot = "never"
	ctx, cancel := context.WithCancel(context.Background())
	c := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t)))
	done := make(chan error, 1)
	go func() { done <- c.RunWithRetry(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "slot exists", func() error {
		if !e.slotExists() {
			return notYet("no slot")
		}
		return nil
	})
	e.exec(`INSERT INTO public.ev VALUES (1, '2024-01-01')`)
	e.exec(`INSERT INTO public.ev VALUES (2, '294276-12-31 23:59:59')`)
	e.exec(`INSERT INTO public.ev VALUES (3, '2024-01-03')`)
	// Row 1 may be there twice: a run that failed at row 2 had not confirmed it yet, and the
	// next sends it again (a crash may duplicate, never drop).
	var ids []string
	eventually(t, "row 3 on the topic", func() error {
		seen := map[string]bool{}
		ids = ids[:0]
		for _, r := range e.tryEvents("wh.public.ev") {
			if r.ev == nil {
				continue
			}
			if id := toString(r.ev.After["id"]); !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if !seen["3"] {
			return notYet("rows %v", ids)
		}
		return nil
	})
	if !sameMultiset(ids, []string{"1", "3"}) {
		t.Errorf("topic rows %v, want 1 and 3", ids)
	}
	d := e.waitDLQ(1)[0]
	reason, _ := header(d, "backflow.reason")
	if !strings.HasPrefix(reason, "undecodable: ") || !strings.Contains(reason, "out of range") {
		t.Errorf("reason %q, want undecodable with the decode error", reason)
	}
	if table, _ := header(d, "backflow.table"); table != "public.ev" {
		t.Errorf("table header %q", table)
	}
	if !strings.Contains(string(d.Value), `"294276-12-31 23:59:59"`) {
		t.Errorf("dead letter value %s, want the row as PostgreSQL wrote it", d.Value)
	}
}

// TestSnapshotUndecodableRowDeadLettered: a row the initial snapshot reads but cannot decode (a
// timestamp past what microseconds since 1970 hold in 64 bits) would fail every run at the same
// chunk: it goes to the dead-letter topic with the reason and the row as PostgreSQL wrote it,
// and the snapshot goes on with the rows after it.
func TestSnapshotUndecodableRowDeadLettered(t *testing.T) {
	e := newEnv(t, "public.ev")
	e.exec(`CREATE TABLE public.ev (id int PRIMARY KEY, at timestamp);
		INSERT INTO public.ev VALUES (1, '2024-01-01'), (2, '294276-12-31 23:59:59'), (3, '2024-01-03')`)
	e.cfg.Source.Postgres.SnapshotChunk = 2 // the bad row ends a chunk: the next starts after it
	e.start()
	var ids []string
	for _, r := range e.waitEvents("wh.public.ev", 2) {
		ids = append(ids, toString(r.ev.After["id"]))
	}
	if !sameMultiset(ids, []string{"1", "3"}) {
		t.Errorf("topic rows %v, want 1 and 3", ids)
	}
	d := e.waitDLQ(1)[0]
	reason, _ := header(d, "backflow.reason")
	if !strings.HasPrefix(reason, "undecodable: ") || !strings.Contains(reason, "out of range") || !strings.Contains(reason, `"at"`) {
		t.Errorf("reason %q, want undecodable with the column and the decode error", reason)
	}
	if op, _ := header(d, "backflow.op"); op != "r" {
		t.Errorf("op header %q, want r", op)
	}
	if table, _ := header(d, "backflow.table"); table != "public.ev" {
		t.Errorf("table header %q", table)
	}
	if !strings.Contains(string(d.Value), `"294276-12-31 23:59:59"`) || !strings.Contains(string(d.Value), `"2"`) {
		t.Errorf("dead letter value %s, want the row as PostgreSQL wrote it", d.Value)
	}
}

// TestReSnapshotUndecodableRowDeadLettered: a re-snapshot (plain, and a full refresh) meets a row
// it cannot decode in the middle of a chunk: a dead letter takes the row's place, and the rows of
// that chunk and of the chunks after it arrive.
func TestReSnapshotUndecodableRowDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []capture.RequestOpt
	}{{"plain", nil}, {"full refresh", []capture.RequestOpt{capture.FullRefresh()}}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.ev")
			e.exec(`CREATE TABLE public.ev (id int PRIMARY KEY, at timestamp);
				INSERT INTO public.ev VALUES (1, '2024-01-01'), (2, '2024-01-02'), (3, '294276-12-31 23:59:59'),
					(4, '2024-01-04'), (5, '2024-01-05')`)
			e.cfg.Source.Postgres.Snapshot = "never"
			e.cfg.Source.Postgres.SnapshotChunk = 2 // chunks [1 2] [3 4] [5]
			e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
			e.start()
			if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.ev", "", tc.opts...); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range e.waitEvents("wh.public.ev", 4) {
				if r.ev == nil || r.ev.Op != change.OpRead {
					t.Fatalf("record %+v on the topic, want reads only", r.rec)
				}
				ids = append(ids, toString(r.ev.After["id"]))
			}
			if !sameMultiset(ids, []string{"1", "2", "4", "5"}) {
				t.Errorf("topic rows %v, want 1, 2, 4 and 5", ids)
			}
			d := e.waitDLQ(1)[0]
			if reason, _ := header(d, "backflow.reason"); !strings.HasPrefix(reason, "undecodable: ") || !strings.Contains(reason, "out of range") {
				t.Errorf("reason %q, want undecodable with the decode error", reason)
			}
			if !strings.Contains(string(d.Value), `"294276-12-31 23:59:59"`) {
				t.Errorf("dead letter value %s, want the row as PostgreSQL wrote it", d.Value)
			}
		})
	}
}
