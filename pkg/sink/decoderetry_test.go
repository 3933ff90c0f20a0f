package sink_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// TestRegistryOutageIsRetriedNotDeadLettered: while the schema registry answers 503, records
// whose writer schema the sink does not have yet wait (their partitions hold) instead of going
// to the dead-letter topic; once it answers, every record is applied in order. A malformed
// record among them is still dead-lettered, and its neighbours applied.
func TestRegistryOutageIsRetriedNotDeadLettered(t *testing.T) {
	h := newHarness(t)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	var down atomic.Bool
	var refused atomic.Int32
	reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/schemas/ids/") || !down.Load() {
			return false
		}
		refused.Add(1)
		http.Error(w, `{"error_code":50301,"message":"registry is restarting"}`, http.StatusServiceUnavailable)
		return true
	})
	regCl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := codec.NewEncoder(codec.TopicPrefix("wh"), codec.Registry(regCl))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var recs []*kgo.Record
	for i := range int32(60) {
		id := i%6 + 1 // every key several times: a value out of order would show
		ev := upsert(id, i, fmt.Sprint(i))
		ev.Table = h.tbl
		key, val, err := enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: key, Value: val})
		if i == 30 { // the same key's partition, a registry framing with a body that is not a change
			recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: key, Value: append(val[:5:5], 0xff, 0xff, 0xff)})
		}
	}
	down.Store(true)
	if err := h.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h.cfg.Kafka.Registry = config.SchemaRegistry{URL: reg.URL()}
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) { s.Batch.MaxRecords = 7 }), target)
	waitFor(t, "the sink to meet the outage", func() bool { return refused.Load() >= 5 })
	time.Sleep(500 * time.Millisecond)
	if c := h.committed("s1"); c > 0 {
		t.Errorf("offsets moved to %d while the registry was down", c)
	}
	if rows := target.snapshot(); len(rows) > 0 {
		t.Errorf("rows applied without their schema: %v", rows)
	}
	down.Store(false)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })

	dlq := h.dlq("s1")
	if len(dlq) != 1 || !strings.HasPrefix(header(dlq[0], "backflow.reason"), "decode: ") {
		for _, r := range dlq {
			t.Logf("dead letter at %s: %s", header(r, "backflow.offset"), header(r, "backflow.reason"))
		}
		t.Fatalf("%d dead letters, want only the malformed record", len(dlq))
	}
	target.mu.Lock()
	defer target.mu.Unlock()
	for id := int32(1); id <= 6; id++ {
		// Batches keep each key's last state, so not every value is applied; those that are
		// must come in order and end with the last.
		got := target.history[fmt.Sprint(id)]
		for i := 1; i < len(got); i++ {
			if got[i].(int32) <= got[i-1].(int32) {
				t.Errorf("key %d applied %v: out of order", id, got)
				break
			}
		}
		if last := 54 + id - 1; len(got) == 0 || got[len(got)-1] != last {
			t.Errorf("key %d applied %v, want it to end with %d", id, got, last)
		}
	}
}
