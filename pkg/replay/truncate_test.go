package replay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// TestReplayThroughManyTruncates replays, several times over, a topic of six partitions with a
// truncate's copies every few dozen records in each, written in small batches: every replay
// ends, within its limit, with the target holding exactly the rows written after the last
// truncate. A poll takes records past a copy, which the replay keeps aside until the truncate is
// applied: without them it would never reach the ranges' ends.
func TestReplayThroughManyTruncates(t *testing.T) {
	h := newRDHarness(t)
	ctx := context.Background()
	const topic, parts = "wh.public.t6", 6
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(h.cl), []string{topic}, config.Topics{Partitions: parts, ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	encode := func(ev *change.Event) []byte {
		_, val, err := h.enc.Encode(ctx, topic, ev)
		if err != nil {
			t.Fatal(err)
		}
		return val
	}
	want := map[int32]int32{}
	var recs []*kgo.Record
	for n := range 8 {
		clear(want)
		for p := range int32(parts) {
			for range 10 + rand.IntN(60) {
				id := p + parts*rand.Int32N(50)
				v := rand.Int32N(1000)
				want[id] = v
				ev := &change.Event{Op: change.OpUpdate, Table: h.tbl, After: change.Row{"id": id, "v": v, "note": "n"}}
				key, val, err := h.enc.Encode(ctx, topic, ev)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: key, Value: val})
			}
		}
		if n < 7 { // the last rows stay after the last truncate
			clear(want)
			recs = append(recs, kafka.TruncateRecords(ctx, topic, fmt.Sprintf("0/%X", 0x1000+n), encode(&change.Event{Op: change.OpTruncate, Table: h.tbl}), parts)...)
		}
	}
	// In small batches, as capture writes a stream of small transactions.
	for len(recs) > 0 {
		n := min(len(recs), 1+rand.IntN(8))
		if err := h.cl.ProduceSync(ctx, recs[:n]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}

	for i := range 5 {
		h.exec(`TRUNCATE public.t_copy`)
		name := fmt.Sprintf("many%d", i)
		sc := config.Sink{Name: name, Topics: []string{topic}, Connector: "postgres", Key: []string{"id"},
			With:     map[string]any{"url": h.url, "table": "public.t_copy"},
			Map:      map[string]string{"id": "after.id", "v": "after.v", "note": "after.note"},
			OnDelete: "delete", OnTruncate: "truncate",
			Batch: config.Batch{MaxRecords: 40, MaxWait: 5 * time.Millisecond}}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := h.replayEarliest(rctx, sc)
		cancel()
		if err != nil {
			t.Fatalf("replay %d: %v", i, err)
		}
		if got := h.rows(); got != rowsOf(want) {
			t.Fatalf("replay %d: target rows %q, want %q", i, got, rowsOf(want))
		}
	}
}

// rowsOf renders rows as rdHarness.rows does.
func rowsOf(rows map[int32]int32) string {
	var out []string
	for id := range int32(1000) {
		if v, ok := rows[id]; ok {
			out = append(out, fmt.Sprintf("%d=%d", id, v))
		}
	}
	return strings.Join(out, " ")
}
