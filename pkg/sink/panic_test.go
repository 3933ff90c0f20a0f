package sink_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// panicky is a decoder that panics, as a bug would, on a message reading "boom".
type panicky struct{ sink.Decoder }

func (p panicky) Decode(ctx context.Context, topic string, key, value []byte) (*change.Event, error) {
	if string(value) == "boom" {
		_ = value[len(value)] // index out of range, as a reader's bug would be
	}
	return p.Decoder.Decode(ctx, topic, key, value)
}

// panickyRows is a RowLoader target whose row buffer panics on the text "boom".
type panickyRows struct{ *loaderTarget }

func (p panickyRows) RowBuffer(t *change.Table, fields []string) (sink.RowBuffer, error) {
	buf, err := p.loaderTarget.RowBuffer(t, fields)
	return panickyBuffer{buf}, err
}

type panickyBuffer struct{ sink.RowBuffer }

func (b panickyBuffer) String(col int, v []byte) {
	if string(v) == "boom" {
		panic("row buffer: boom")
	}
	b.RowBuffer.String(col, v)
}

// TestPanicsAreRecordFailures: a record whose decoding panics goes to the dead-letter topic with
// the panic and where it happened; the records after it are applied. A panic while scanning
// created rows sends the batch through decoding instead, where the same rows apply.
func TestPanicsAreRecordFailures(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var recs []*kgo.Record
	add := func(op change.Op, id int32, note string) {
		ev := &change.Event{Op: op, Table: h.tbl, After: change.Row{"id": id, "v": id, "note": note}}
		key, val, err := h.enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: key, Value: val, Offset: int64(len(recs))})
	}
	add(change.OpUpdate, 1, "n")
	recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: []byte("k"), Value: []byte("boom"), Offset: int64(len(recs))})
	add(change.OpUpdate, 2, "n")
	add(change.OpCreate, 3, "n") // batch 2: created rows, one of which panics the row buffer
	add(change.OpCreate, 4, "boom")
	add(change.OpCreate, 5, "n")

	target := &loaderTarget{memTarget: *newMemTarget()}
	sc := h.sinkConfig(func(s *config.Sink) { s.Batch.MaxRecords = 3 })
	h.cfg.Sinks = []config.Sink{sc}
	factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return panickyRows{target}, nil }}
	s, err := sink.New(ctx, h.cfg, sc, factories, sink.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	sink.WrapDecoder(s, func(d sink.Decoder) sink.Decoder { return panicky{d} })
	counts, err := s.Process(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Applied != 5 || counts.DeadLettered != 1 {
		t.Errorf("counts = %+v, want 5 applied and 1 dead-lettered", counts)
	}
	if rows := target.snapshot(); len(rows) != 5 || rows["4"]["note"] != "boom" {
		t.Errorf("target rows %v, want ids 1 to 5", rows)
	}
	if len(target.loads) != 0 {
		t.Errorf("batches ending %v were loaded as rows; the panicking scan should have sent them as records", target.loads)
	}
	dlq := h.dlq("s1")
	if len(dlq) != 1 || string(dlq[0].Value) != "boom" {
		t.Fatalf("dead letters %v, want the record that panicked", dlq)
	}
	reason := header(dlq[0], sink.HeaderReason)
	for _, want := range []string{"panic: runtime error: index out of range [4] with length 4", "panicky.Decode (panic_test.go:"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not say %q", reason, want)
		}
	}
	t.Logf("reason: %s", reason)
}
