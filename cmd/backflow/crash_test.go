package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// workload applies random inserts, updates and deletes to public.w and remembers, per key, every
// committed change as "c:<v>", "u:<v>" or "d:<v>" (v is a global change counter, so each change
// is unique). The table has REPLICA IDENTITY FULL so that a delete event carries the v it removed.
type workload struct {
	mu     sync.Mutex
	seq    int
	live   map[int]int
	log    map[int][]string
	done   int
	target int
}

func newWorkload(target int) *workload {
	return &workload{live: map[int]int{}, log: map[int][]string{}, target: target}
}

// txn builds one transaction of n changes on keys [1, keys] and returns its SQL and its log.
func (w *workload) txn(rng *rand.Rand, n, keys int) (string, map[int][]string, map[int]int) {
	var sql strings.Builder
	sql.WriteString("BEGIN;")
	entries := map[int][]string{}
	live := map[int]int{}
	isLive := func(k int) (int, bool) {
		if v, ok := live[k]; ok {
			return v, v >= 0
		}
		v, ok := w.live[k]
		return v, ok
	}
	for i := 0; i < n; i++ {
		w.seq++
		k := 1 + rng.IntN(keys)
		old, exists := isLive(k)
		switch {
		case !exists:
			fmt.Fprintf(&sql, "INSERT INTO public.w VALUES (%d, %d);", k, w.seq)
			entries[k] = append(entries[k], fmt.Sprintf("c:%d", w.seq))
			live[k] = w.seq
		case rng.IntN(10) < 7:
			fmt.Fprintf(&sql, "UPDATE public.w SET v = %d WHERE id = %d;", w.seq, k)
			entries[k] = append(entries[k], fmt.Sprintf("u:%d", w.seq))
			live[k] = w.seq
		default:
			fmt.Fprintf(&sql, "DELETE FROM public.w WHERE id = %d;", k)
			entries[k] = append(entries[k], fmt.Sprintf("d:%d", old))
			live[k] = -1
		}
	}
	sql.WriteString("COMMIT;")
	return sql.String(), entries, live
}

// run applies transactions until target changes are committed or ctx ends.
func (w *workload) run(ctx context.Context, pg *testenv.Postgres) error {
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(1, 2))
	for w.progress() < w.target && ctx.Err() == nil {
		sql, entries, live := w.txn(rng, 50, 5000)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("workload transaction: %w", err)
		}
		w.commit(entries, live)
	}
	return nil
}

func (w *workload) commit(entries map[int][]string, live map[int]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range entries {
		w.log[k] = append(w.log[k], e...)
		w.done += len(e)
	}
	for k, v := range live {
		if v < 0 {
			delete(w.live, k)
		} else {
			w.live[k] = v
		}
	}
}

func (w *workload) progress() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func label(ev *change.Event) string {
	switch ev.Op {
	case change.OpDelete:
		return fmt.Sprintf("d:%d", ev.Before["v"])
	default:
		return fmt.Sprintf("%s:%d", ev.Op, ev.After["v"])
	}
}

// TestCaptureCrashLosesNothing SIGKILLs the capture process at several points of a 100,000-change
// workload (once during its initial snapshot) and restarts it each time. Afterwards every
// committed change is on the topic, every snapshot row too, and per key the changes appear in
// commit order (a replayed suffix after a crash is allowed: duplicates, never loss or reordering).
func TestCaptureCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long crash test")
	}
	const changes, prefill, chunk = 100_000, 100_000, 1000 // chunk: snapshot_chunk in pipelineYAML
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL);
		ALTER TABLE public.w REPLICA IDENTITY FULL;
		INSERT INTO public.w SELECT g, 0 FROM generate_series(100001, 100000 + `+fmt.Sprint(prefill)+`) g`); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, pipelineYAML(pg.URL("postgres"), kf.Brokers(), ""))
	p := startProcess(t, bin, "capture", "-c", cfgPath)

	// First kill: during the snapshot, once some snapshot rows are on the topic.
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 3000, p)
	p.kill(t)
	if snapshotDone(t, kf.Brokers()) {
		t.Fatal("the snapshot finished before the first kill; make the prefill larger")
	}
	p = startProcess(t, bin, "capture", "-c", cfgPath)
	// A kill during the snapshot may re-read the chunk in flight; on a slow machine the snapshot
	// can still be running at later kills too, so each of those is allowed one chunk as well.
	snapshotKills := 1

	w := newWorkload(changes)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- w.run(wctx, pg) }()
	for _, at := range []int{15_000, 35_000, 55_000, 75_000, 90_000} {
		for w.progress() < at {
			select {
			case err := <-werr:
				t.Fatalf("workload stopped early: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if !snapshotDone(t, kf.Brokers()) {
			snapshotKills++
		}
		p.kill(t)
		p = startProcess(t, bin, "capture", "-c", cfgPath)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, pg, "backflow", currentLSN(t, pg), p)

	checkCrashTopic(t, readTopic(t, kf.Brokers(), "wh", "wh.public.w"), w, prefill, prefill+chunk*snapshotKills)
}

// checkCrashTopic checks per-key order and completeness of the changes in recs against w, that
// all prefill snapshot rows arrived, and that they were read at most maxReads times.
func checkCrashTopic(t *testing.T, recs []decodedRecord, w *workload, prefill, maxReads int) {
	t.Helper()
	next := map[int]int{} // per key: index of the next expected change
	snap := map[int]bool{}
	reads := 0
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		key := int(r.ev.Key()["id"].(int32))
		if r.ev.Op == change.OpRead {
			reads++
			snap[key] = true
			continue
		}
		want, got, i := w.log[key], label(r.ev), next[key]
		switch {
		case i < len(want) && want[i] == got:
			next[key] = i + 1
		case slices.Contains(want[:i], got):
			// re-sent after a crash: allowed
		default:
			t.Fatalf("key %d: %s arrived out of order or unknown; expected %v next (history %v)", key, got, at(want, i), want)
		}
	}
	missing := 0
	for key, want := range w.log {
		if next[key] != len(want) {
			missing += len(want) - next[key]
			if missing < 5 {
				t.Errorf("key %d: only %d of %d changes on the topic; first missing %s", key, next[key], len(want), want[next[key]])
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d committed changes missing from the topic", missing)
	}
	if len(snap) != prefill {
		t.Fatalf("%d of %d snapshot rows on the topic", len(snap), prefill)
	}
	// The snapshot resumes after its last acknowledged chunk: a crash re-reads at most one chunk.
	if reads > maxReads {
		t.Fatalf("%d snapshot reads for %d rows: finished chunks were read again", reads, prefill)
	}
	t.Logf("%d records checked: %d changes in order, %d snapshot rows read %d times (at most %d allowed)", len(recs), w.progress(), len(snap), reads, maxReads)
}

func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return "nothing"
}

// snapshotDone reads capture's saved snapshot progress.
func snapshotDone(t *testing.T, brokers []string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, brokers, "wh._capture")
	if err != nil || len(recs) == 0 {
		return false
	}
	var st struct{ Done bool }
	if err := json.Unmarshal(recs[len(recs)-1].Value, &st); err != nil {
		t.Fatalf("capture state: %v", err)
	}
	return st.Done
}

func waitTopicRecords(t *testing.T, brokers []string, topic string, n int, p *process) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs, err := testenv.ConsumeAll(ctx, brokers, topic)
		cancel()
		if err == nil && len(recs) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never reached %d records; backflow log:\n%s", topic, n, p.tail())
}
