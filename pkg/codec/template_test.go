package codec

import (
	"bytes"
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestTemplateFill: in every format, a value encoded as a template without its commit fields and
// filled later is byte for byte what Encode writes, for every op, NULLs, unchanged TOAST and a
// table whose shape changes between events; the template does not depend on the commit fields,
// and the fields Fill writes are those a decoder reads back.
func TestTemplateFill(t *testing.T) {
	ctx := context.Background()
	v1 := everyKind()
	v2 := everyKind() // a column added in the middle of the transaction: a new schema
	v2.Columns = append(v2.Columns, change.Column{Name: "added", Kind: change.KindInt32, PGType: "int4", TypeOID: 23})
	var events []*change.Event
	for _, tbl := range []*change.Table{v1, v2, v1} {
		evs := testEvents(tbl)
		for _, name := range sortedKeys(evs) {
			ev := evs[name]
			if tbl == v2 && ev.After != nil {
				ev.After["added"] = int32(5)
			}
			events = append(events, ev)
		}
	}
	commits := []Commit{
		{SourceTsMs: 1714557699999, TxID: 4294967295, LSN: 1 << 40, TsMs: 1714557700000},
		{SourceTsMs: -1, TxID: 0, LSN: 0, TsMs: 0}, // nulls, and a negative long
	}
	for _, format := range []string{FormatAvro, FormatAvroConfluent, FormatJSON, FormatDebeziumJSON} {
		t.Run(format, func(t *testing.T) {
			pub := newPublisherLog()
			enc, err := NewEncoder(TopicPrefix(testPrefix), Format(format), SchemaPublisher(pub.publish))
			if err != nil {
				t.Fatal(err)
			}
			dec, err := NewDecoder(Schemas(pub.store))
			if err != nil {
				t.Fatal(err)
			}
			topic := "wh.public.every_kind"
			for i, ev := range events {
				key, value, err := enc.Encode(ctx, topic, ev)
				if err != nil {
					t.Fatal(err)
				}
				early := *ev // the event as known before its commit
				early.Source.TxID, early.Source.LSN, early.Source.TsMs, early.TsMs = 12, 34, 56, 78
				tkey, tmpl, err := enc.EncodeTemplate(ctx, topic, &early)
				if err != nil {
					t.Fatal(err)
				}
				filled, err := enc.Fill(tmpl, CommitOf(ev))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tkey, key) || !bytes.Equal(filled, value) {
					t.Fatalf("event %d (%s of %d columns): template filled differs from Encode\n key %q\nwant %q\nvalue %q\n want %q",
						i, ev.Op, len(ev.Table.Columns), tkey, key, filled, value)
				}
				for _, c := range commits {
					v, err := enc.Fill(tmpl, c)
					if err != nil {
						t.Fatal(err)
					}
					got, err := dec.Decode(ctx, topic, key, v)
					if err != nil {
						t.Fatalf("event %d (%s) filled with %+v: %v\n%q", i, ev.Op, c, err, v)
					}
					if g := CommitOf(got); g != c {
						t.Errorf("event %d (%s): filled with %+v, decoded %+v", i, ev.Op, c, g)
					}
				}
			}
		})
	}
}

// TestFillDamagedTemplate: offsets that do not fit the template fail instead of panicking.
func TestFillDamagedTemplate(t *testing.T) {
	enc, err := NewEncoder(TopicPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for _, cuts := range [][numCuts]int{{0, 5, 3}, {0, 0, 11}, {-1, 0, 0}} {
		if _, err := enc.Fill(Template{Value: make([]byte, 10), Cuts: cuts}, Commit{}); err == nil {
			t.Errorf("offsets %v in a template of 10 bytes filled", cuts)
		}
	}
}
