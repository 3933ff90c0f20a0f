package sink_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// loaderTarget is a memTarget with the RowLoader fast path: it records which batches came as
// scanned rows and which as Records.
type loaderTarget struct {
	memTarget
	loads     []int64 // NextOffset of each batch loaded as rows
	applied   []int64 // NextOffset of each batch applied as Records
	failLoads int     // fail this many more Loads
}

func (l *loaderTarget) Apply(ctx context.Context, b *sink.Batch) error {
	l.mu.Lock()
	l.applied = append(l.applied, b.NextOffset)
	l.mu.Unlock()
	return l.memTarget.Apply(ctx, b)
}

func (l *loaderTarget) RowBuffer(t *change.Table, fields []string) (sink.RowBuffer, error) {
	return &memRows{l: l, t: t, fields: fields, row: map[string]any{}}, nil
}

// memRows builds rows as the mapping would name their fields.
type memRows struct {
	l      *loaderTarget
	t      *change.Table
	fields []string
	row    map[string]any
	rows   []map[string]any
}

func (m *memRows) set(col int, v any) {
	if f := m.fields[col]; f != "" {
		m.row[f] = v
	}
}
func (m *memRows) Null(col int)               { m.set(col, nil) }
func (m *memRows) Bool(col int, v bool)       { m.set(col, v) }
func (m *memRows) Int(col int, v int64)       { m.set(col, int32(v)) }
func (m *memRows) Float32(col int, v float32) { m.set(col, v) }
func (m *memRows) Float64(col int, v float64) { m.set(col, v) }
func (m *memRows) String(col int, v []byte)   { m.set(col, string(v)) }
func (m *memRows) Bytes(col int, v []byte)    { m.set(col, slices.Clone(v)) }

func (m *memRows) EndRow() bool {
	m.rows = append(m.rows, m.row)
	m.row = map[string]any{}
	return true
}

func (m *memRows) Load(_ context.Context, b *sink.Batch) error {
	l := m.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failLoads > 0 {
		l.failLoads--
		return errors.New("duplicate key")
	}
	l.loads = append(l.loads, b.NextOffset)
	for _, r := range m.rows {
		k := fmt.Sprint(r["id"])
		l.rows[k] = r
		l.history[k] = append(l.history[k], r["v"])
	}
	return nil
}

// TestRowLoaderPath: batches whose records all created rows with distinct keys go to the
// connector's RowLoader; a batch with an update, a repeated key or a tombstone-only run goes as
// Records, and so does a batch whose Load fails; a filter or an expression turns the path off.
func TestRowLoaderPath(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	encode := func(op change.Op, id, v int32, off int64) *kgo.Record {
		ev := &change.Event{Op: op, Table: h.tbl, After: change.Row{"id": id, "v": v, "note": "n"},
			Source: change.Source{TsMs: 1714557600000}}
		key, val, err := h.enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: "wh.public.t", Key: key, Value: val, Offset: off}
	}
	var recs []*kgo.Record
	off := int64(0)
	add := func(op change.Op, id, v int32) {
		recs = append(recs, encode(op, id, v, off))
		off++
	}
	// batch 1 (offsets 0-3): an update → records (which also read the schema topic: rows are
	// only scanned once the decoder knows the writer schema)
	add(change.OpRead, 20, 1)
	add(change.OpUpdate, 20, 3)
	add(change.OpCreate, 21, 1)
	add(change.OpCreate, 22, 1)
	for i := range 4 { // batch 2 (4-7): created rows → rows
		add(change.OpCreate, int32(i), 1)
	}
	add(change.OpCreate, 10, 1) // batch 3 (8-11): a key twice → records
	add(change.OpCreate, 11, 1)
	add(change.OpCreate, 10, 2)
	add(change.OpRead, 12, 1)
	for i := range 4 { // batch 4 (12-15): created rows → rows, unless Load fails: records
		add(change.OpCreate, int32(30+i), 1)
	}
	for i := range 4 { // batch 5 (16-19): snapshot reads → rows
		add(change.OpRead, int32(40+i), 1)
	}

	process := func(sc config.Sink, target *loaderTarget, opts ...sink.Opt) sink.Counts {
		t.Helper()
		h.cfg.Sinks = []config.Sink{sc}
		factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
		s, err := sink.New(ctx, h.cfg, sc, factories, append(opts, sink.WithLogger(zaptest.NewLogger(t)))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		counts, err := s.Process(ctx, recs)
		if err != nil {
			t.Fatal(err)
		}
		return counts
	}
	batches := func(s *config.Sink) { s.Batch.MaxRecords = 4 }

	// backflow_sink_batches_total{sink="s1",path=path} counts each batch by the path it took.
	paths := func(m *observe.Metrics) map[string]float64 {
		out := map[string]float64{}
		for _, path := range []string{observe.PathRows, observe.PathRecords, observe.PathFallback, observe.PathBisect} {
			if v := metricValue(t, m, "backflow_sink_batches_total", map[string]string{"sink": "s1", "path": path}); v > 0 {
				out[path] = v
			}
		}
		return out
	}

	target, m := &loaderTarget{memTarget: *newMemTarget()}, observe.NewMetrics()
	counts := process(h.sinkConfig(batches), target, sink.WithMetrics(m))
	if !slices.Equal(target.loads, []int64{8, 16, 20}) || !slices.Equal(target.applied, []int64{4, 12}) {
		t.Fatalf("rows loaded for batches ending %v, records applied for %v; want [8 16 20] and [4 12]", target.loads, target.applied)
	}
	if counts.Records != 20 || counts.Applied != 18 { // keys 10 and 20 coalesced
		t.Fatalf("counts = %+v, want 20 records, 18 applied", counts)
	}
	rows := target.snapshot()
	if v := rows["10"]["v"]; v != int32(2) {
		t.Fatalf("key 10 has v = %v, want its last state 2", v)
	}
	if v := rows["20"]["v"]; v != int32(3) {
		t.Fatalf("key 20 has v = %v, want the update's 3", v)
	}
	if len(rows) != 18 || rows["43"]["note"] != "n" {
		t.Fatalf("target has %d rows (row 43: %v), want 18 with every field", len(rows), rows["43"])
	}

	if got, want := paths(m), map[string]float64{observe.PathRows: 3, observe.PathRecords: 2}; !maps.Equal(got, want) {
		t.Fatalf("batches by path %v, want %v", got, want)
	}

	failing, m := &loaderTarget{memTarget: *newMemTarget(), failLoads: 1}, observe.NewMetrics()
	process(h.sinkConfig(batches), failing, sink.WithMetrics(m))
	if !slices.Equal(failing.loads, []int64{16, 20}) || !slices.Equal(failing.applied, []int64{4, 8, 12}) {
		t.Fatalf("with the first Load failing: rows loaded for %v, records applied for %v; want [16 20] and [4 8 12]", failing.loads, failing.applied)
	}
	if len(failing.snapshot()) != len(rows) {
		t.Fatalf("after a failed Load the target has %d rows, want %d", len(failing.snapshot()), len(rows))
	}
	if got, want := paths(m), map[string]float64{observe.PathRows: 2, observe.PathRecords: 2, observe.PathFallback: 1}; !maps.Equal(got, want) {
		t.Fatalf("with the first Load failing: batches by path %v, want %v", got, want)
	}

	for name, mod := range map[string]func(*config.Sink){
		"filter":     func(s *config.Sink) { s.Filter = "after.v > 0" },
		"expression": func(s *config.Sink) { s.Map["v"] = "after.v * 1" },
		"version":    func(s *config.Sink) { s.VersionColumn = "lsn" },
	} {
		off := &loaderTarget{memTarget: *newMemTarget()}
		process(h.sinkConfig(batches, mod), off)
		if len(off.loads) != 0 || len(off.applied) != 5 {
			t.Fatalf("%s: rows loaded for %v, records applied for %v; want every batch as records", name, off.loads, off.applied)
		}
	}
}
