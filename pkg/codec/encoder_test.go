package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/soe"

	"github.com/backflow-dev/backflow/pkg/change"
)

func TestNewEncoderOptions(t *testing.T) {
	noop := func(context.Context, uint64, []byte) error { return nil }
	tests := []struct {
		name string
		opts []EncoderOpt
		err  string
	}{
		{"defaults", nil, ""},
		{"json", []EncoderOpt{Format(FormatJSON)}, ""},
		{"empty format is avro", []EncoderOpt{Format("")}, ""},
		{"unknown format", []EncoderOpt{Format("xml")}, `unknown format "xml"`},
		{"empty prefix", []EncoderOpt{TopicPrefix("")}, "empty topic prefix"},
		{"nil registry", []EncoderOpt{Registry(nil)}, "nil *sr.Client"},
		{"publisher", []EncoderOpt{SchemaPublisher(noop)}, ""},
		{"avro-confluent", []EncoderOpt{Format(FormatAvroConfluent), SchemaPublisher(noop)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEncoder(tt.opts...)
			if tt.err == "" {
				if err != nil || e == nil {
					t.Fatalf("NewEncoder: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("NewEncoder error = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

// TestSingleObjectHeader checks the single-object framing against hamba's own fingerprinting.
func TestSingleObjectHeader(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	tbl := everyKind()
	key, value, err := p.enc.Encode(ctx, "wh.public.every_kind", testEvents(tbl)["insert"])
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, valueJSON, err := p.enc.Schemas(tbl)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		msg    []byte
		schema []byte
	}{{"key", key, keyJSON}, {"value", value, valueJSON}} {
		t.Run(c.name, func(t *testing.T) {
			s, err := avro.ParseBytesWithCache(c.schema, "", &avro.SchemaCache{})
			if err != nil {
				t.Fatal(err)
			}
			be, err := s.FingerprintUsing(avro.CRC64Avro)
			if err != nil {
				t.Fatal(err)
			}
			le, err := s.FingerprintUsing(avro.CRC64AvroLE)
			if err != nil {
				t.Fatal(err)
			}
			if c.msg[0] != 0xC3 || c.msg[1] != 0x01 {
				t.Fatalf("magic % x, want c3 01", c.msg[:2])
			}
			if got := c.msg[2:10]; string(got) != string(le) {
				t.Fatalf("fingerprint bytes % x, want CRC64-AVRO little-endian % x", got, le)
			}
			fp := binary.BigEndian.Uint64(be)
			if got := binary.LittleEndian.Uint64(c.msg[2:10]); got != fp {
				t.Fatalf("fingerprint %016x, want %016x", got, fp)
			}
			if p.pub.count(fp) != 1 {
				t.Fatalf("schema %016x published %d times, want 1", fp, p.pub.count(fp))
			}
			hdr, err := soe.BuildHeader(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(hdr) != string(c.msg[:10]) {
				t.Fatalf("header % x, hamba's soe.BuildHeader % x", c.msg[:10], hdr)
			}
			// The body is plain Avro binary: hamba decodes it generically with the schema.
			var generic map[string]any
			if err := avro.NewDecoderForSchema(s, strings.NewReader(string(c.msg[10:]))).Decode(&generic); err != nil {
				t.Fatalf("hamba cannot decode the body: %v", err)
			}
			if c.name == "value" && generic["op"] != "c" {
				t.Fatalf("hamba decoded op %v", generic["op"])
			}
			if c.name == "key" && generic["region"] != "eu" {
				t.Fatalf("hamba decoded key %v", generic)
			}
		})
	}
}

func TestPublisherOncePerSchema(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	tbl := everyKind()
	evs := testEvents(tbl)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ev := range evs {
				if _, _, err := p.enc.Encode(ctx, "wh.public.every_kind", ev); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// A new pointer with the same shape reuses the schemas: no new publication.
	same := everyKind()
	if _, _, err := p.enc.Encode(ctx, "wh.public.every_kind", testEvents(same)["insert"]); err != nil {
		t.Fatal(err)
	}
	// EncodeKey (tombstones) uses the key schema, already published.
	if _, err := p.enc.EncodeKey(ctx, "wh.public.every_kind", tbl, change.Row{"id": int64(1), "region": "x"}); err != nil {
		t.Fatal(err)
	}
	if len(p.pub.calls) != 2 {
		t.Fatalf("%d schemas published, want 2 (key and value): %v", len(p.pub.calls), p.pub.calls)
	}
	for fp, n := range p.pub.calls {
		if n != 1 {
			t.Errorf("schema %016x published %d times", fp, n)
		}
	}
}

func TestPublisherFailure(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	p.pub.fail = errors.New("kafka down")
	ev := testEvents(everyKind())["insert"]
	if _, _, err := p.enc.Encode(ctx, "wh.public.every_kind", ev); err == nil || !strings.Contains(err.Error(), "kafka down") {
		t.Fatalf("Encode error = %v, want the publisher's", err)
	}
	p.pub.fail = nil
	k, v, err := p.enc.Encode(ctx, "wh.public.every_kind", ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.pub.calls) != 2 {
		t.Fatalf("after recovery %d schemas published, want 2", len(p.pub.calls))
	}
	if _, err := p.dec.Decode(ctx, "wh.public.every_kind", k, v); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaEvolution adds a column: the new shape gets a new value schema (the key schema is
// unchanged), it is published before the first message that uses it, and messages of the old
// shape still decode to the old table.
func TestSchemaEvolution(t *testing.T) {
	ctx := context.Background()
	for _, encoding := range []string{"avro", "avro+registry"} {
		t.Run(encoding, func(t *testing.T) {
			p := newPair(t, encoding)
			topic := "wh.public.every_kind"
			v1 := everyKind()
			ev1 := testEvents(v1)["insert"]
			k1, m1, err := p.enc.Encode(ctx, topic, ev1)
			if err != nil {
				t.Fatal(err)
			}
			v2 := everyKind()
			v2.Columns = append(v2.Columns, change.Column{Name: "added", Kind: change.KindInt32, PGType: "int4", TypeOID: 23})
			ev2 := testEvents(v2)["insert"]
			ev2.After["added"] = int32(5)
			k2, m2, err := p.enc.Encode(ctx, topic, ev2)
			if err != nil {
				t.Fatal(err)
			}
			if string(m1[:5]) == string(m2[:5]) {
				t.Fatalf("old and new value share header % x", m1[:5])
			}
			if string(k1) != string(k2) {
				t.Fatalf("key changed: % x vs % x", k1, k2)
			}
			if encoding == "avro" {
				fp1 := binary.LittleEndian.Uint64(m1[2:10])
				fp2 := binary.LittleEndian.Uint64(m2[2:10])
				if fp1 == fp2 {
					t.Fatal("same fingerprint after ADD COLUMN")
				}
				if p.pub.count(fp1) != 1 || p.pub.count(fp2) != 1 || len(p.pub.calls) != 3 {
					t.Fatalf("publications %v, want key, value v1 and value v2 once each", p.pub.calls)
				}
			} else {
				if id1, id2 := binary.BigEndian.Uint32(m1[1:5]), binary.BigEndian.Uint32(m2[1:5]); id1 == id2 {
					t.Fatalf("same registry id %d after ADD COLUMN", id1)
				}
				ss, ok := p.reg.GetSchema(topic+"-value", 2)
				if !ok || ss.Version != 2 {
					t.Fatalf("subject %s-value has no version 2", topic)
				}
			}
			// Decode in reverse order: the old message after the new one.
			got2, err := p.dec.Decode(ctx, topic, k2, m2)
			if err != nil {
				t.Fatal(err)
			}
			got1, err := p.dec.Decode(ctx, topic, k1, m1)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got1, ev1) {
				t.Fatalf("old message:\n got: %s\nwant: %s", dump(got1), dump(ev1))
			}
			if !reflect.DeepEqual(got2, ev2) {
				t.Fatalf("new message:\n got: %s\nwant: %s", dump(got2), dump(ev2))
			}
		})
	}
}

// TestRegistrySubjects checks TopicNameStrategy subjects, the wire format and that each schema is
// registered once per topic.
func TestRegistrySubjects(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro+registry")
	var posts atomic.Int32
	p.reg.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		return false
	})
	tbl := everyKind()
	for _, topic := range []string{"wh.public.every_kind", "other.topic"} {
		for range 5 {
			for _, ev := range testEvents(tbl) {
				key, value, err := p.enc.Encode(ctx, topic, ev)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					msg     []byte
					subject string
				}{{key, topic + "-key"}, {value, topic + "-value"}} {
					if c.msg == nil {
						continue
					}
					ss, ok := p.reg.GetSchema(c.subject, 1)
					if !ok {
						t.Fatalf("subject %q not registered", c.subject)
					}
					if c.msg[0] != 0 || binary.BigEndian.Uint32(c.msg[1:5]) != uint32(ss.ID) {
						t.Fatalf("%s: header % x, want 00 + id %d", c.subject, c.msg[:5], ss.ID)
					}
				}
			}
		}
	}
	if n := posts.Load(); n != 4 {
		t.Fatalf("%d registrations, want 4 (key and value for each of 2 topics)", n)
	}
}

func TestEncodeErrors(t *testing.T) {
	ctx := context.Background()
	tbl := everyKind()
	withAfter := func(col string, v any) *change.Event {
		ev := testEvents(tbl)["insert"]
		ev.After[col] = v
		return ev
	}
	tests := []struct {
		name string
		ev   *change.Event
		err  string
	}{
		{"nil event", nil, "nil event"},
		{"nil table", &change.Event{Op: change.OpCreate}, "nil Table"},
		{"unknown op", &change.Event{Op: "x", Table: tbl, After: fullRow()}, `unknown op`},
		{"insert without after", &change.Event{Op: change.OpCreate, Table: tbl}, "no after row"},
		{"delete without before", &change.Event{Op: change.OpDelete, Table: tbl}, "no before row"},
		{"wrong type", withAfter("i4", "12"), `column "i4" (int32): want int32, got string`},
		{"overflow", withAfter("small", int64(1)<<40), `column "small" (int16): 1099511627776 (int64) overflows int32`},
		{"wrong elem", withAfter("nums", []any{int32(1), "two"}), `column "nums" (array): element 1: want int32, got string`},
		{"not an array", withAfter("tags", "x"), `column "tags" (array): want []any, got string`},
		{"null key", withAfter("id", nil), `key column "id" is NULL`},
		{"unknown column", withAfter("nope", int32(1)), `row has column "nope" that table public.every_kind does not have`},
	}
	for _, format := range []string{FormatAvro, FormatJSON} {
		enc, err := NewEncoder(Format(format), SchemaPublisher(func(context.Context, uint64, []byte) error { return nil }))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				_, _, err := enc.Encode(ctx, "wh.public.every_kind", tt.ev)
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.err)
				}
				if tt.ev != nil && tt.ev.Table != nil && !strings.Contains(err.Error(), `topic "wh.public.every_kind"`) {
					t.Fatalf("error %q does not name the topic", err)
				}
			})
		}
	}
}

// TestLenientGoTypes: other integer widths, float widths and []byte for text are accepted and
// decode to the canonical forms.
func TestLenientGoTypes(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	tbl := everyKind()
	ev := testEvents(tbl)["insert"]
	ev.After["id"] = 42           // int
	ev.After["i4"] = int16(7)     // int16
	ev.After["f8"] = float32(2)   // float32
	ev.After["txt"] = []byte("b") // bytes for text
	ev.After["tags"] = []string{"p", "q"}
	k, v, err := p.enc.Encode(ctx, "t", ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.dec.Decode(ctx, "t", k, v)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": int64(42), "i4": int32(7), "f8": float64(2), "txt": "b", "tags": []any{"p", "q"}}
	for c, w := range want {
		if !reflect.DeepEqual(got.After[c], w) {
			t.Errorf("%s = %#v, want %#v", c, got.After[c], w)
		}
	}
}

func TestTablesWithoutKey(t *testing.T) {
	ctx := context.Background()
	tbl := &change.Table{Schema: "s", Name: "log", Columns: []change.Column{{Name: "line", Kind: change.KindString}}}
	for _, encoding := range []string{"avro", "avro+registry", "json"} {
		t.Run(encoding, func(t *testing.T) {
			p := newPair(t, encoding)
			ev := &change.Event{Op: change.OpCreate, Table: tbl, After: change.Row{"line": "x"}, Source: change.Source{Connector: "postgresql", Name: testPrefix, Snapshot: "false"}}
			k, v, err := p.enc.Encode(ctx, "wh.s.log", ev)
			if err != nil {
				t.Fatal(err)
			}
			if k != nil {
				t.Fatalf("key % x for a table without key columns", k)
			}
			if _, err := p.dec.Decode(ctx, "wh.s.log", k, v); err != nil {
				t.Fatal(err)
			}
			if k, err := p.enc.EncodeKey(ctx, "wh.s.log", tbl, ev.After); k != nil || err != nil {
				t.Fatalf("EncodeKey = % x, %v; want nil, nil", k, err)
			}
		})
	}
}

func TestAvroName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"id", "id"},
		{"_x9", "_x9"},
		{"CamelCase", "CamelCase"},
		{"1st", "_1st"},
		{"9", "_9"},
		{"a-b", "a_b"},
		{"Weird Name!", "Weird_Name_"},
		{"größe", "gr__e"},
		{"名前", "__"},
		{"a.b", "a_b"},
		{"", "_"},
		{"$", "_"},
	}
	for _, tt := range tests {
		if got := AvroName(tt.in); got != tt.want {
			t.Errorf("AvroName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Namespace("my-co.prod", "1public", "order lines"); got != "my_co.prod._1public.order_lines" {
		t.Errorf("Namespace = %q", got)
	}
}

// TestSanitisedColumns: names that are not Avro names, including two that sanitise alike, keep
// their PostgreSQL names through a round trip.
func TestSanitisedColumns(t *testing.T) {
	ctx := context.Background()
	tbl := &change.Table{Schema: "Sales Data", Name: "2024-orders", Columns: []change.Column{
		{Name: "order-id", Kind: change.KindInt64, Key: true},
		{Name: "order_id", Kind: change.KindString},
		{Name: "Größe", Kind: change.KindFloat64},
		{Name: "1st", Kind: change.KindBool},
	}}
	p := newPair(t, "avro")
	ev := &change.Event{Op: change.OpCreate, Table: tbl,
		After:  change.Row{"order-id": int64(1), "order_id": "x", "Größe": 1.5, "1st": true},
		Source: change.Source{Connector: "postgresql", Name: testPrefix, Snapshot: "false"}}
	k, v, err := p.enc.Encode(ctx, "t", ev)
	if err != nil {
		t.Fatal(err)
	}
	_, valueJSON, _ := p.enc.Schemas(tbl)
	s, err := parseSchema(valueJSON)
	if err != nil {
		t.Fatal(err)
	}
	env := s.(*avro.RecordSchema)
	if env.FullName() != "wh.Sales_Data._2024_orders.Envelope" {
		t.Fatalf("envelope name %s", env.FullName())
	}
	val := env.Fields()[0].Type().(*avro.UnionSchema).Types()[1].(*avro.RecordSchema)
	var names, pgNames []string
	for _, f := range val.Fields() {
		names = append(names, f.Name())
		pgNames = append(pgNames, f.Prop("pg.name").(string))
	}
	if want := []string{"order_id", "order_id_2", "Gr__e", "_1st"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("field names %q, want %q", names, want)
	}
	if want := []string{"order-id", "order_id", "Größe", "1st"}; !reflect.DeepEqual(pgNames, want) {
		t.Fatalf("pg.name %q, want %q", pgNames, want)
	}
	got, err := p.dec.Decode(ctx, "t", k, v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("got %s\nwant %s", dump(got), dump(ev))
	}
}

// TestPropertyOnlyChange: a change that only touches schema properties (varchar -> text: same
// Avro types, other pg.type) keeps the fingerprint, since the parsing canonical form drops
// properties. The new schema JSON is still published, under the same key, so that the compacted
// _schemas topic (and a store fed from it) ends up with the latest properties; values decode the
// same either way.
func TestPropertyOnlyChange(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	v1 := everyKind()
	_, m1, err := p.enc.Encode(ctx, "t", testEvents(v1)["insert"])
	if err != nil {
		t.Fatal(err)
	}
	v2 := everyKind()
	v2.Columns[len(v2.Columns)-1].PGType = "text"
	_, m2, err := p.enc.Encode(ctx, "t", testEvents(v2)["insert"])
	if err != nil {
		t.Fatal(err)
	}
	fp := binary.LittleEndian.Uint64(m1[2:10])
	if fp != binary.LittleEndian.Uint64(m2[2:10]) {
		t.Fatal("a property-only change changed the fingerprint")
	}
	if n := p.pub.count(fp); n != 2 {
		t.Fatalf("schema %016x published %d times, want 2 (both property sets)", fp, n)
	}
	got, err := p.dec.Decode(ctx, "t", nil, m1)
	if err != nil {
		t.Fatal(err)
	}
	if pg := got.Table.Columns[len(got.Table.Columns)-1].PGType; pg != "text" {
		t.Fatalf("pg.type %q, want the latest published, text", pg)
	}
	if !reflect.DeepEqual(got.After, testEvents(v1)["insert"].After) {
		t.Fatal("values differ")
	}
}
