package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
)

// recordingTB is a testing.TB whose failures are recorded instead of failing the test; Fatalf
// ends the goroutine, as testing's does.
type recordingTB struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recordingTB) Helper()             {}
func (r *recordingTB) Logf(string, ...any) {}
func (r *recordingTB) Errorf(f string, a ...any) {
	r.failed = true
	r.msg += fmt.Sprintf(f, a...) + "\n"
}
func (r *recordingTB) Fatalf(f string, a ...any) {
	r.Errorf(f, a...)
	runtime.Goexit()
}

// runCheck runs checkCrashTopic on recs and returns its failure message, "" when it passed.
func runCheck(t *testing.T, recs []decodedRecord, w *workload) string {
	return runCheckSlot(t, recs, w, false)
}

// runCheckSlot is runCheck with checkCrashTopic's slotFirst.
func runCheckSlot(t *testing.T, recs []decodedRecord, w *workload, slotFirst bool) string {
	rt := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		checkCrashTopic(rt, recs, w, 0, 0, slotFirst)
	}()
	<-done
	return rt.msg
}

var checkTable = &change.Table{Schema: "public", Name: "w", Columns: []change.Column{
	{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "v", Kind: change.KindInt32},
}}

func checkEvent(op change.Op, key, v int) *change.Event {
	row := change.Row{"id": int32(key), "v": int32(v)}
	ev := &change.Event{Op: op, Table: checkTable}
	if op == change.OpDelete {
		ev.Before = row
	} else {
		ev.After = row
	}
	return ev
}

// checkWorkload is a small workload history, built without a database.
func checkWorkload() *workload {
	w := newWorkload(0)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 40 {
		_, tl := w.txn(rng, 5, 12)
		w.commit(tl)
	}
	return w
}

// topicFrom is what capture writes for w when its slot's snapshot sees the table as of commit
// cut (-1: before the first): a read of every row then live, then every later change in order.
// replayed lists keys whose last change before the cut the stream sends again after their read.
func topicFrom(w *workload, cut int, replayed ...int) []decodedRecord {
	at := -1
	if cut >= 0 {
		at = w.commits[cut]
	}
	var out []decodedRecord
	add := func(ev *change.Event) {
		out = append(out, decodedRecord{rec: &kgo.Record{Offset: int64(len(out))}, ev: ev})
	}
	type pending struct{ seq, key, idx int }
	var later []pending
	for key := 1; key <= 12; key++ {
		last := -1
		for i, s := range w.seqs[key] {
			if s <= at {
				last = i
			} else {
				later = append(later, pending{s, key, i})
			}
		}
		if last >= 0 && !strings.HasPrefix(w.log[key][last], "d:") {
			v, _ := strconv.Atoi(w.log[key][last][2:])
			add(checkEvent(change.OpRead, key, v))
		}
		for _, r := range replayed {
			if r == key && last >= 0 {
				later = append(later, pending{0, key, last})
			}
		}
	}
	// Changes in commit order (a replayed one first: it comes right after the snapshot).
	for len(later) > 0 {
		j := 0
		for i, p := range later {
			if p.seq < later[j].seq {
				j = i
			}
		}
		p := later[j]
		later = append(later[:j], later[j+1:]...)
		lbl := w.log[p.key][p.idx]
		v, _ := strconv.Atoi(lbl[2:])
		op := map[byte]change.Op{'c': change.OpCreate, 'u': change.OpUpdate, 'd': change.OpDelete}[lbl[0]]
		add(checkEvent(op, p.key, v))
	}
	return out
}

// TestCheckCrashTopicSnapshotOfWorkload: when the workload commits before the slot exists, the
// initial snapshot (exported with the slot) carries those commits as reads of the rows they
// left, and the stream starts after them. That topic is right and the check accepts it; a
// snapshot that is not the table at one commit, or a stream that repeats what the snapshot
// already holds, is not.
func TestCheckCrashTopicSnapshotOfWorkload(t *testing.T) {
	w := checkWorkload()
	for _, cut := range []int{-1, 0, 1, 7, 39} {
		if msg := runCheck(t, topicFrom(w, cut), w); msg != "" {
			t.Errorf("snapshot as of commit %d: the check failed a correct topic: %s", cut, msg)
		}
	}

	// The stream sends a change the snapshot already covers, after the read: not the slot's
	// consistent point.
	key := 0
	for k := 1; k <= 12; k++ {
		if n := len(w.seqs[k]); n > 0 && w.seqs[k][0] <= w.commits[7] && w.seqs[k][n-1] > w.commits[7] {
			key = k
			break
		}
	}
	if msg := runCheck(t, topicFrom(w, 7, key), w); !strings.Contains(msg, "out of order") {
		t.Errorf("a change before the snapshot streamed after it (key %d) passed the check: %q", key, msg)
	}

	// A read missing: the snapshot is not the table at any commit.
	recs := topicFrom(w, 7)
	for i, r := range recs {
		if r.ev.Op == change.OpRead {
			recs = append(recs[:i], recs[i+1:]...)
			break
		}
	}
	if msg := runCheck(t, recs, w); msg == "" {
		t.Error("a snapshot missing a row passed the check")
	}

	// A read with a row the key never had at the cut.
	recs = topicFrom(w, 7)
	for _, r := range recs {
		if r.ev.Op == change.OpRead {
			r.ev.After["v"] = int32(1_000_000)
			break
		}
	}
	if msg := runCheck(t, recs, w); !strings.Contains(msg, "not the table at any commit") {
		t.Errorf("a snapshot with a row the table never had passed the check: %q", msg)
	}
}

// TestCheckCrashTopicResumedSnapshot: with the slot made before the workload, a snapshot resumed
// after a kill reads workload rows as of when it resumes, and the stream then sends every change
// since the slot's consistent point. That topic is right with slotFirst; a key's first change
// missing is not. Without slotFirst the same topic fails: its reads look like an exported
// snapshot's, after which the older changes would be out of order.
func TestCheckCrashTopicResumedSnapshot(t *testing.T) {
	w := checkWorkload()
	var recs, changes []decodedRecord
	for _, r := range topicFrom(w, 7) {
		if r.ev.Op == change.OpRead {
			recs = append(recs, r)
		}
	}
	changes = topicFrom(w, -1)
	if msg := runCheckSlot(t, append(recs, changes...), w, true); msg != "" {
		t.Errorf("a resumed snapshot's topic failed the check: %s", msg)
	}
	if msg := runCheckSlot(t, append(recs, changes...), w, false); msg == "" {
		t.Error("with the stream starting at the snapshot, older changes after its reads passed the check")
	}
	if msg := runCheckSlot(t, append(recs, changes[1:]...), w, true); msg == "" {
		t.Errorf("a topic without its first change passed the check (%s)", label(changes[0].ev))
	}
}
