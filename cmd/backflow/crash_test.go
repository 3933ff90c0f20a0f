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
// It also keeps the counter value of every change (seqs, beside log) and the counter at each
// commit (commits), so that the rows a snapshot read can be checked against a point in its history.
type workload struct {
	mu      sync.Mutex
	seq     int
	live    map[int]int
	log     map[int][]string
	seqs    map[int][]int // per key, the counter of each change in log
	commits []int         // the counter at each commit, ascending
	done    int
	target  int
}

func newWorkload(target int) *workload {
	return &workload{live: map[int]int{}, log: map[int][]string{}, seqs: map[int][]int{}, target: target}
}

// txnLog is what one transaction did: per key its changes' labels and counters, and the keys'
// values after it (-1: deleted).
type txnLog struct {
	entries map[int][]string
	seqs    map[int][]int
	live    map[int]int
	end     int // the counter after its last change
}

// txn builds one transaction of n changes on keys [1, keys] and returns its SQL and its log.
func (w *workload) txn(rng *rand.Rand, n, keys int) (string, txnLog) {
	var sql strings.Builder
	sql.WriteString("BEGIN;")
	entries := map[int][]string{}
	seqs := map[int][]int{}
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
		seqs[k] = append(seqs[k], w.seq)
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
	return sql.String(), txnLog{entries: entries, seqs: seqs, live: live, end: w.seq}
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
		sql, tl := w.txn(rng, 50, 5000)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("workload transaction: %w", err)
		}
		w.commit(tl)
	}
	return nil
}

func (w *workload) commit(tl txnLog) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range tl.entries {
		w.log[k] = append(w.log[k], e...)
		w.seqs[k] = append(w.seqs[k], tl.seqs[k]...)
		w.done += len(e)
	}
	w.commits = append(w.commits, tl.end)
	for k, v := range tl.live {
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
	const changes, prefill, chunk = 100_000, 300_000, 1000 // chunk: snapshot_chunk in pipelineYAML
	// A kill during the snapshot re-reads what was not yet both acknowledged and saved: the
	// records in flight to Kafka (max_in_flight, kept small here so the bound means something),
	// the chunk each reader (at most 4) holds, and what was acknowledged during the last save.
	const inFlight = 5000
	perKill := inFlight + 4*chunk + chunk
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL);
		ALTER TABLE public.w REPLICA IDENTITY FULL;
		INSERT INTO public.w SELECT g, 0 FROM generate_series(100001, 100000 + `+fmt.Sprint(prefill)+`) g`); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(pipelineYAML(pg.URL("postgres"), kf.Brokers(), ""), "    snapshot_chunk: 1000\n",
		fmt.Sprintf("    snapshot_chunk: 1000\n    max_in_flight: %d\n", inFlight), 1)
	cfgPath := writeConfig(t, yaml)
	p := startProcess(t, bin, "capture", "-c", cfgPath)

	// First kill: during the snapshot, once some snapshot rows are on the topic.
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 3000, p)
	p.kill(t)
	if snapshotDone(t, kf.Brokers()) {
		t.Fatal("the snapshot finished before the first kill; make the prefill larger")
	}
	p = startProcess(t, bin, "capture", "-c", cfgPath)
	// On a slow machine the snapshot can still be running at later kills too; each of those is
	// allowed the same re-reads.
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

	// The first process made the slot before the workload began.
	checkCrashTopic(t, readTopic(t, kf.Brokers(), "wh", "wh.public.w"), w, prefill, prefill+perKill*snapshotKills, true)
}

// checkCrashTopic checks per-key order and completeness of the changes in recs against w, that
// all prefill snapshot rows arrived, and that they were read at most maxReads times.
//
// slotFirst says the slot existed before the workload's first commit: then every change of the
// workload is on the topic, from each key's first. A snapshot resumed after a kill reads rows as
// of when it resumes, not as of the slot's consistent point, and the slot then replays every
// change since that point after them (see snapshotter.run): its reads of workload keys may be
// newer than the changes that follow them, and they tell nothing about where the stream starts.
//
// The initial snapshot may also read keys of the workload: a process is active (holds the slot's
// capture lock) a moment before it has created the slot, and the transactions committed before
// the slot's consistent point reach the topic as the rows they left, read by the snapshot
// exported with the slot, not as changes. Those reads must be the table as of one commit of the
// workload (snapshotCut); a key's changes up to that commit must not be on the topic, its read
// comes before its later changes, and these follow in order from there.
func checkCrashTopic(t testing.TB, recs []decodedRecord, w *workload, prefill, maxReads int, slotFirst bool) {
	t.Helper()
	cut, floor := -1, map[int]int{}
	if !slotFirst {
		cut, floor = snapshotCut(t, recs, w)
	}
	next := map[int]int{} // per key: index of the next expected change
	for key, n := range floor {
		next[key] = n
	}
	changed := map[int]bool{}
	snap := map[int]bool{}
	reads, workloadReads := 0, 0
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		key := int(r.ev.Key()["id"].(int32))
		if r.ev.Op == change.OpRead {
			if _, ok := w.log[key]; ok {
				if changed[key] {
					t.Fatalf("key %d: snapshot %s arrived after a change of the key\n%s", key, label(r.ev), whereKey(recs, key, label(r.ev)))
				}
				workloadReads++
				continue
			}
			reads++
			snap[key] = true
			continue
		}
		changed[key] = true
		want, got, i := w.log[key], label(r.ev), next[key]
		switch {
		case i < len(want) && want[i] == got:
			next[key] = i + 1
		case slices.Contains(want[floor[key]:i], got):
			// re-sent after a crash: allowed
		default:
			t.Fatalf("key %d: %s arrived out of order or unknown; expected %v next (history %v; %d changes before the snapshot)\n%s",
				key, got, at(want, i), want, floor[key], whereKey(recs, key, at(want, i)))
		}
	}
	switch {
	case workloadReads > 0 && slotFirst:
		t.Logf("a resumed snapshot read %d rows of the workload", workloadReads)
	case workloadReads > 0:
		t.Logf("the initial snapshot read %d rows of the workload, the table as of change %d", workloadReads, cut)
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

// whereKey lists every event of key on the topic (partition, offset, label, timestamp) and
// says whether the expected change is on the topic at all, for a failure message.
func whereKey(recs []decodedRecord, key int, expected string) string {
	var b strings.Builder
	found := false
	for _, r := range recs {
		if r.ev == nil || int(r.ev.Key()["id"].(int32)) != key {
			continue
		}
		lbl := label(r.ev)
		if lbl == expected {
			found = true
		}
		fmt.Fprintf(&b, "  %s at partition %d offset %d (%s)\n", lbl, r.rec.Partition, r.rec.Offset, r.rec.Timestamp.Format("15:04:05.000"))
	}
	parts := map[int32]int64{}
	for _, r := range recs {
		parts[r.rec.Partition]++
	}
	if found {
		return fmt.Sprintf("%s is on the topic, out of place; records per partition %v; the key's records:\n%s", expected, parts, b.String())
	}
	return fmt.Sprintf("%s is NOT on the topic at all; records per partition %v; the key's records:\n%s", expected, parts, b.String())
}

// snapshotCut finds the commit of the workload whose table the snapshot reads of workload keys
// in recs show, failing the test when there is none: the snapshot was not consistent. It returns
// the counter at that commit and, per key, how many of its changes the commit includes (none
// when the snapshot read no workload key).
func snapshotCut(t testing.TB, recs []decodedRecord, w *workload) (int, map[int]int) {
	t.Helper()
	read := map[int]int{} // key -> the v its snapshot row had
	top := 0
	for _, r := range recs {
		if r.ev == nil || r.ev.Op != change.OpRead {
			continue
		}
		key := int(r.ev.Key()["id"].(int32))
		if _, ok := w.log[key]; !ok {
			continue // a prefill row
		}
		v := int(r.ev.After["v"].(int32))
		if old, ok := read[key]; ok && old != v {
			t.Fatalf("key %d: the snapshot read it twice with different rows, r:%d and r:%d", key, old, v)
		}
		read[key], top = v, max(top, v)
	}
	if len(read) == 0 {
		return 0, map[int]int{}
	}
	var mismatch string
	for i, _ := slices.BinarySearch(w.commits, top); i < len(w.commits); i++ {
		floor, diff := w.stateAt(w.commits[i], read)
		if diff == "" {
			return w.commits[i], floor
		}
		if mismatch == "" {
			mismatch = diff
		}
	}
	if mismatch == "" {
		mismatch = "the workload has no commit at or after it"
	}
	t.Fatalf("the snapshot's %d reads of workload keys are not the table at any commit (the first possible one is at or after change %d: %s)",
		len(read), top, mismatch)
	return 0, nil
}

// stateAt compares read (key -> v) with the table as of the commit whose last change is cut, and
// returns per key how many of its changes were committed by then, or what differs.
func (w *workload) stateAt(cut int, read map[int]int) (map[int]int, string) {
	floor := map[int]int{}
	for key, seqs := range w.seqs {
		n, _ := slices.BinarySearch(seqs, cut+1)
		floor[key] = n
		v, ok := read[key]
		live := n > 0 && !strings.HasPrefix(w.log[key][n-1], "d:")
		switch {
		case live && !ok:
			return nil, fmt.Sprintf("key %d has %s, the snapshot did not read it", key, w.log[key][n-1])
		case live && fmt.Sprint(v) != w.log[key][n-1][2:]:
			return nil, fmt.Sprintf("key %d has %s, the snapshot read r:%d", key, w.log[key][n-1], v)
		case !live && ok:
			return nil, fmt.Sprintf("key %d has no row, the snapshot read r:%d", key, v)
		}
	}
	return floor, ""
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
