package codec

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// rowRecorder is a RowWriter that rebuilds the row Decode would return.
type rowRecorder struct {
	t   *change.Table
	row change.Row
}

func (w *rowRecorder) set(col int, v any)         { w.row[w.t.Columns[col].Name] = v }
func (w *rowRecorder) Null(col int)               { w.set(col, nil) }
func (w *rowRecorder) Bool(col int, v bool)       { w.set(col, v) }
func (w *rowRecorder) Float32(col int, v float32) { w.set(col, v) }
func (w *rowRecorder) Float64(col int, v float64) { w.set(col, v) }
func (w *rowRecorder) String(col int, v []byte)   { w.set(col, string(v)) }
func (w *rowRecorder) Bytes(col int, v []byte)    { w.set(col, slices.Clone(v)) }
func (w *rowRecorder) Int(col int, v int64) {
	if k := w.t.Columns[col].Kind; k == change.KindInt16 || k == change.KindInt32 || k == change.KindDate {
		w.set(col, int32(v))
		return
	}
	w.set(col, v)
}

// scalarKinds is everyKind without its array columns, which ScanCreated does not read.
func scalarKinds() *change.Table {
	t := everyKind()
	t.Columns = slices.DeleteFunc(t.Columns, func(c change.Column) bool { return c.Kind == change.KindArray })
	return t
}

func withoutArrays(row change.Row) change.Row {
	for _, name := range []string{"tags", "nums", "stamps"} {
		delete(row, name)
	}
	return row
}

// TestScanCreated checks that ScanCreated hands a RowWriter the very row Decode returns, for
// created rows in both Avro framings, and refuses every other event.
func TestScanCreated(t *testing.T) {
	ctx := context.Background()
	topic := testPrefix + ".public.every_kind"
	for _, encoding := range []string{"avro", "avro+registry"} {
		p := newPair(t, encoding)
		tbl := scalarKinds()
		events := testEvents(tbl)
		for _, ev := range events {
			ev.After, ev.Before = withoutArrays(ev.After), withoutArrays(ev.Before)
		}
		for _, name := range sortedKeys(events) {
			ev := events[name]
			t.Run(encoding+"/"+name, func(t *testing.T) {
				_, value, err := p.enc.Encode(ctx, topic, ev)
				if err != nil {
					t.Fatal(err)
				}
				want, err := p.dec.Decode(ctx, topic, nil, value)
				if err != nil {
					t.Fatal(err)
				}
				st := p.dec.ScanTable(ctx, value)
				if st != want.Table {
					t.Fatalf("ScanTable gave %p, Decode's table is %p", st, want.Table)
				}
				w := &rowRecorder{t: st, row: change.Row{}}
				c, ok := p.dec.ScanCreated(ctx, value, st, w)
				created := ev.Op == change.OpCreate || ev.Op == change.OpRead
				if ok != created {
					t.Fatalf("ScanCreated of a %q event reported %v", ev.Op, ok)
				}
				if !created {
					return
				}
				if !reflect.DeepEqual(w.row, want.After) {
					t.Fatalf("scanned row differs from the decoded one\n got: %#v\nwant: %#v", w.row, want.After)
				}
				if c.Op != ev.Op || c.SourceTsMs != ev.Source.TsMs {
					t.Fatalf("Created = %+v, want op %q and source ts %d", c, ev.Op, ev.Source.TsMs)
				}
				other := &change.Table{Schema: st.Schema, Name: st.Name, Columns: st.Columns}
				if _, ok := p.dec.ScanCreated(ctx, value, other, w); ok {
					t.Fatal("ScanCreated read a message of another table")
				}
			})
		}
	}
}

// TestScanRefuses lists the messages ScanTable leaves to Decode.
func TestScanRefuses(t *testing.T) {
	ctx := context.Background()
	topic := testPrefix + ".public.every_kind"
	insert := func(tbl *change.Table, row change.Row) *change.Event {
		return &change.Event{Op: change.OpCreate, Table: tbl, After: row, Source: testSource("false")}
	}
	avro, jsonPair := newPair(t, "avro"), newPair(t, "json")
	cases := []struct {
		name  string
		pair  *codecPair
		ev    *change.Event
		value []byte
	}{
		{name: "array columns", pair: avro, ev: insert(everyKind(), fullRow())},
		{name: "json", pair: jsonPair, ev: insert(scalarKinds(), withoutArrays(fullRow()))},
		{name: "unknown schema", pair: avro, value: []byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0}},
		{name: "garbage", pair: avro, value: []byte{0xFF, 0xFE}},
		{name: "tombstone", pair: avro, value: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			value := tc.value
			if tc.ev != nil {
				var err error
				if _, value, err = tc.pair.enc.Encode(ctx, topic, tc.ev); err != nil {
					t.Fatal(err)
				}
			}
			if st := tc.pair.dec.ScanTable(ctx, value); st != nil {
				t.Fatalf("ScanTable accepted the message (table %s.%s)", st.Schema, st.Name)
			}
		})
	}
}

// TestScanCreatedTruncatedBody checks that a created row cut short is refused, not half-read.
func TestScanCreatedTruncatedBody(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	tbl := scalarKinds()
	ev := &change.Event{Op: change.OpCreate, Table: tbl, After: withoutArrays(fullRow()), Source: testSource("false")}
	_, value, err := p.enc.Encode(ctx, testPrefix+".public.every_kind", ev)
	if err != nil {
		t.Fatal(err)
	}
	st := p.dec.ScanTable(ctx, value)
	if st == nil {
		t.Fatal("ScanTable refused a created row of scalar columns")
	}
	for _, cut := range []int{1, len(value) / 2, len(value) - 20} {
		if _, ok := p.dec.ScanCreated(ctx, value[:len(value)-cut], st, &rowRecorder{t: st, row: change.Row{}}); ok {
			t.Fatalf("ScanCreated accepted the message without its last %d bytes", cut)
		}
	}
	if _, ok := p.dec.ScanCreated(ctx, append(slices.Clip(value), 0), st, &rowRecorder{t: st, row: change.Row{}}); ok {
		t.Fatal("ScanCreated accepted a trailing byte")
	}
}
