package codec

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/backflow-dev/backflow/pkg/change"
)

// The fuzz targets of the readers. Their seeds are messages the package's own encoders write
// (every kind, every op, in the three framings), Debezium's samples of debezium_test.go, a
// foreign schema with the shapes only the skipping readers meet, and crafted messages whose
// sizes claim far more than they hold. go test runs the seeds; make fuzz mutates them.

const fuzzTopic = testPrefix + ".public.every_kind"

// foreignAvroValue is a writer schema of another producer: Debezium's VariableScaleDecimal and
// temporal types in the row, and maps, arrays of empty records, fixed, enums and a recursive
// record in fields the readers skip (source extras and an envelope field of their own).
const foreignAvroValue = `{"type":"record","name":"Envelope","namespace":"other.public.things","fields":[
 {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
   {"name":"id","type":"long"},
   {"name":"price","type":["null",{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data",
     "fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],
     "connect.name":"io.debezium.data.VariableScaleDecimal"}],"default":null},
   {"name":"d","type":["null",{"type":"int","connect.name":"io.debezium.time.Date"}],"default":null},
   {"name":"t_ms","type":["null",{"type":"int","connect.name":"io.debezium.time.Time"}],"default":null},
   {"name":"t_ns","type":["null",{"type":"long","connect.name":"io.debezium.time.NanoTime"}],"default":null},
   {"name":"ts_ms","type":["null",{"type":"long","connect.name":"io.debezium.time.Timestamp"}],"default":null},
   {"name":"ts_ns","type":["null",{"type":"long","connect.name":"io.debezium.time.NanoTimestamp"}],"default":null},
   {"name":"dur","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroDuration"}],"default":null},
   {"name":"dur_ns","type":["null",{"type":"long","connect.name":"io.debezium.time.NanoDuration"}],"default":null},
   {"name":"zoned","type":["null",{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}],"default":null},
   {"name":"mood","type":["null",{"type":"enum","name":"Mood","symbols":["sad","ok","happy"]}],"default":null}
  ]}],"default":null},
 {"name":"after","type":["null","Value"],"default":null},
 {"name":"source","type":{"type":"record","name":"Source","fields":[
   {"name":"connector","type":"string"},{"name":"ts_ms","type":"long"},
   {"name":"extra","type":{"type":"map","values":{"type":"array","items":{"type":"fixed","name":"Pair","size":2}}}},
   {"name":"empties","type":{"type":"array","items":{"type":"record","name":"Empty","fields":[]}}},
   {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["a","b"]}},
   {"name":"txId","type":["null","long","string"],"default":null}]}},
 {"name":"op","type":{"type":"enum","name":"Op","symbols":["c","u","d","r","t"]}},
 {"name":"ts_ms","type":["null","long"],"default":null},
 {"name":"chain","type":["null",{"type":"record","name":"Link","fields":[{"name":"next","type":["null","Link"]}]}],"default":null}
]}`

// fuzzCodecs is a decoder that knows every seed's writer schema, and encoders to re-encode what
// it decodes.
type fuzzCodecs struct {
	dec   *Decoder
	avro  *Encoder // single-object encoding into dec's store
	json  *Encoder
	dbz   *Encoder // FormatDebeziumJSON
	store *SchemaStore
}

func newFuzzCodecs(f *testing.F) *fuzzCodecs {
	f.Helper()
	reg := srfake.New()
	f.Cleanup(reg.Close)
	regClient := func() *sr.Client {
		cl, err := sr.NewClient(sr.URLs(reg.URL()))
		if err != nil {
			f.Fatal(err)
		}
		return cl
	}
	pub := newPublisherLog()
	fc := &fuzzCodecs{store: pub.store}
	var err error
	if fc.dec, err = NewDecoder(Schemas(pub.store), DecoderRegistry(regClient())); err != nil {
		f.Fatal(err)
	}
	if fc.avro, err = NewEncoder(TopicPrefix(testPrefix), SchemaPublisher(pub.publish)); err != nil {
		f.Fatal(err)
	}
	if fc.json, err = NewEncoder(TopicPrefix(testPrefix), Format(FormatJSON)); err != nil {
		f.Fatal(err)
	}
	if fc.dbz, err = NewEncoder(TopicPrefix(testPrefix), Format(FormatDebeziumJSON)); err != nil {
		f.Fatal(err)
	}
	registry, err := NewEncoder(TopicPrefix(testPrefix), Registry(regClient()))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for _, scalar := range []bool{false, true} {
		events := testEvents(everyKind())
		if scalar { // the created rows ScanCreated reads
			events = testEvents(scalarKinds())
		}
		for _, name := range sortedKeys(events) {
			ev := events[name]
			if scalar {
				ev.After, ev.Before = withoutArrays(ev.After), withoutArrays(ev.Before)
			}
			for _, enc := range []*Encoder{fc.avro, registry, fc.json, fc.dbz} {
				key, value, err := enc.Encode(ctx, fuzzTopic, ev)
				if err != nil {
					f.Fatalf("seed %s: %v", name, err)
				}
				f.Add(key, value)
			}
		}
	}
	f.Add([]byte(debeziumKey), []byte(debeziumUpdate))
	f.Add([]byte(`{"id":1004}`), []byte(`{"before":null,"after":{"id":1004,"tags":["a",null],"meta":{"k":1}},"op":"r"}`))
	f.Add([]byte(nil), []byte(`{"schema":null,"payload":null}`))
	f.Add([]byte(nil), fc.debeziumAvroSeed(f))
	// Debezium's documented records: placeholders, decimal modes, heartbeats, transactions.
	fixtures, _ := filepath.Glob("testdata/debezium/*.json")
	for _, name := range fixtures {
		v, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(`{"id":42}`), v)
	}
	// A Decimal as a JSON number (JsonConverter's decimal.format=NUMERIC).
	f.Add([]byte(`{"a":1}`), []byte(`{"schema":{"type":"struct","fields":[{"type":"struct","fields":[`+
		`{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"a"}],`+
		`"optional":true,"name":"p.s.t.Value","field":"after"}],"name":"p.s.t.Envelope"},"payload":{"after":{"a":12.5},"op":"c"}}`))
	for _, v := range fc.foreignSeeds(f) {
		f.Add([]byte(nil), v)
	}
	// Sizes that claim more than the message holds: the string of the second key column
	// (region) after before (null: 00), after (present: 02) and id (42: 54).
	created := testEvents(scalarKinds())["insert nulls"]
	created.After = withoutArrays(created.After)
	_, v, err := fc.avro.Encode(ctx, fuzzTopic, created)
	if err != nil {
		f.Fatal(err)
	}
	head := v[: soeHeaderLen+3 : soeHeaderLen+3]
	if string(v[soeHeaderLen:soeHeaderLen+3]) != "\x00\x02\x54" {
		f.Fatalf("unexpected start of the body: % x", v[soeHeaderLen:])
	}
	for _, claim := range [][]byte{
		{0x80, 0x80, 0x80, 0x80, 0x02},                         // a 256 MiB string
		{0xfe, 0xff, 0xff, 0xff, 0x0f},                         // 2 GiB, beyond maxValueBytes
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // a negative length
	} {
		f.Add([]byte(nil), append(head, claim...))
	}
	f.Add([]byte(nil), []byte{0x00, 0, 0, 0, 1})
	f.Add([]byte(nil), []byte{0xC3, 0x01})
	f.Add([]byte(`{`), []byte(`{"op":"c","after":{"a":[[[[[[[]]]]]]]}}`))
	return fc
}

// debeziumAvroSeed is TestDecodeDebeziumAvro's message.
func (fc *fuzzCodecs) debeziumAvroSeed(f *testing.F) []byte {
	return fc.avroSeed(f, debeziumAvroValue, debeziumAvroRecord())[0]
}

// foreignSeeds are messages of foreignAvroValue: one with every field set, one with NULLs.
func (fc *fuzzCodecs) foreignSeeds(f *testing.F) [][]byte {
	row := map[string]any{
		"id": int64(7), "price": map[string]any{"io.debezium.data.VariableScaleDecimal": map[string]any{"scale": 3, "value": []byte{0x30, 0x39}}},
		"d": map[string]any{"int": 19844}, "t_ms": map[string]any{"int": 36000000}, "t_ns": map[string]any{"long": int64(36000000000001)},
		"ts_ms": map[string]any{"long": int64(1714557600123)}, "ts_ns": map[string]any{"long": int64(1714557600123456789)},
		"dur": map[string]any{"long": int64(90061500000)}, "dur_ns": map[string]any{"long": int64(-5000000000)},
		"zoned": map[string]any{"string": "2024-05-01T10:00:00Z"}, "mood": map[string]any{"other.public.things.Mood": "happy"},
	}
	nulls := map[string]any{"id": int64(8)}
	for k := range row {
		if k != "id" {
			nulls[k] = nil
		}
	}
	source := map[string]any{
		"connector": "other", "ts_ms": int64(1714557600000),
		"extra":   map[string]any{"a": []any{[2]byte{1, 2}, [2]byte{3, 4}}, "b": []any{}},
		"empties": []any{map[string]any{}, map[string]any{}}, "kind": "b",
		"txId": map[string]any{"string": "x"},
	}
	chain := map[string]any{"other.public.things.Link": map[string]any{"next": map[string]any{"other.public.things.Link": map[string]any{"next": nil}}}}
	return fc.avroSeed(f, foreignAvroValue,
		map[string]any{"before": nil, "after": map[string]any{"other.public.things.Value": row}, "source": source, "op": "c", "ts_ms": nil, "chain": chain},
		map[string]any{"before": map[string]any{"other.public.things.Value": nulls}, "after": nil, "source": source, "op": "d", "ts_ms": map[string]any{"long": int64(1)}, "chain": nil},
	)
}

// avroSeed adds schema to the store and frames each value of it in single-object encoding.
func (fc *fuzzCodecs) avroSeed(f *testing.F, schema string, values ...map[string]any) [][]byte {
	f.Helper()
	fp, err := fc.store.Add([]byte(schema))
	if err != nil {
		f.Fatal(err)
	}
	s, _ := fc.store.Lookup(fp)
	var out [][]byte
	for _, v := range values {
		body, err := avro.Marshal(s, v)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, singleObject(fp, body))
	}
	return out
}

// FuzzDecode feeds any record to Decode, DecodeKey and the created-row scan. Besides not
// panicking: ScanCreated and Decode agree on every message ScanTable accepts, and what decodes
// survives a round trip through the encoders (Avro: the same rows; JSON, whose kinds are
// re-inferred: stable from the first trip on).
func FuzzDecode(f *testing.F) {
	fc := newFuzzCodecs(f)
	f.Fuzz(func(t *testing.T, key, value []byte) {
		ctx := context.Background()
		_, _, _ = fc.dec.DecodeKey(ctx, fuzzTopic, key)
		ev, err := fc.dec.Decode(ctx, fuzzTopic, key, value)
		if st := fc.dec.ScanTable(ctx, value); st != nil {
			checkScan(t, fc.dec, value, st, ev, err)
		}
		if err != nil || ev == nil {
			return
		}
		// debezium-json keeps kinds; a second trip must change nothing (the first may rescale
		// numerics to one scale per message and turn NaN numerics into NULL).
		if ev2 := fc.roundTrip(t, fc.dbz, ev); ev2 != nil {
			if ev3 := fc.roundTrip(t, fc.dbz, ev2); ev3 != nil && dump(ev3) != dump(ev2) {
				t.Fatalf("debezium-json round trips differ\nsecond: %s\nthird: %s", dump(ev2), dump(ev3))
			}
		}
		if isJSON(value) {
			ev2 := fc.roundTrip(t, fc.json, ev)
			if ev2 == nil {
				return
			}
			if ev3 := fc.roundTrip(t, fc.json, ev2); ev3 != nil && dump(ev3) != dump(ev2) {
				t.Fatalf("JSON round trips differ\nsecond: %s\nthird: %s", dump(ev2), dump(ev3))
			}
			return
		}
		if ev2 := fc.roundTrip(t, fc.avro, ev); ev2 != nil && eventRows(ev2) != eventRows(ev) {
			t.Fatalf("Avro round trip changed the event\n got: %s\nwant: %s", eventRows(ev2), eventRows(ev))
		}
	})
}

// roundTrip encodes ev and decodes it again; nil when the encoder refuses ev (it is stricter than
// the decoder: an update needs both rows, a key column its value). What it writes must decode.
func (fc *fuzzCodecs) roundTrip(t *testing.T, enc *Encoder, ev *change.Event) *change.Event {
	ctx := context.Background()
	key, value, err := enc.Encode(ctx, fuzzTopic, ev)
	if err != nil {
		return nil
	}
	ev2, err := fc.dec.Decode(ctx, fuzzTopic, key, value)
	if err != nil || ev2 == nil {
		t.Fatalf("the encoder wrote a message the decoder refuses: %v\nevent: %s", err, dump(ev))
	}
	return ev2
}

// checkScan checks that ScanCreated reads a created row exactly when Decode reads one with
// nothing else to apply (no before image, no unchanged TOAST), and the same row.
func checkScan(t *testing.T, dec *Decoder, value []byte, st *change.Table, ev *change.Event, err error) {
	w := &rowRecorder{t: st, row: change.Row{}}
	c, ok := dec.ScanCreated(context.Background(), value, st, w)
	created := err == nil && ev != nil && (ev.Op == change.OpCreate || ev.Op == change.OpRead) &&
		ev.Before == nil && ev.After != nil && ev.UnchangedToast == nil
	switch {
	case ok && !created:
		t.Fatalf("ScanCreated read a created row; Decode gave %v, %v", err, dump(ev))
	case !ok && created:
		t.Fatalf("ScanCreated refused the created row Decode read: %s", dump(ev))
	case !ok:
		return
	}
	if ev.Table != st || c.Op != ev.Op || c.SourceTsMs != ev.Source.TsMs {
		t.Fatalf("ScanCreated gave %+v of table %p; Decode gave op %q, source ts %d, table %p", c, st, ev.Op, ev.Source.TsMs, ev.Table)
	}
	if got, want := rowString(w.row), rowString(ev.After); got != want {
		t.Fatalf("ScanCreated row differs from Decode's\n got: %s\nwant: %s", got, want)
	}
}

// eventRows spells what an Avro round trip keeps of an event: op, times, rows, unchanged TOAST
// and the columns' names and kinds. (%#v spells NaN alike whatever its bits, so NaN equals NaN.)
func eventRows(ev *change.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "op=%s ts=%d toast=%q lsn=%d tx=%d\n", ev.Op, ev.TsMs, ev.UnchangedToast, ev.Source.LSN, ev.Source.TxID)
	for _, c := range ev.Table.Columns {
		fmt.Fprintf(&b, "%s %s %s key=%v; ", c.Name, c.Kind, c.Elem, c.Key)
	}
	b.WriteString("\nbefore: " + rowString(ev.Before) + "\nafter: " + rowString(ev.After))
	return b.String()
}

func rowString(r change.Row) string {
	if r == nil {
		return "nil"
	}
	var b strings.Builder
	for _, k := range sortedKeys(r) {
		fmt.Fprintf(&b, "%s=%#v ", k, r[k])
	}
	return b.String()
}

// FuzzDecimal checks the spelling of Debezium's decimals against math/big: for any unscaled
// value and scale within bounds the string is exactly value × 10^-scale; out of bounds it is an
// error, not a string of 2^31 zeros.
func FuzzDecimal(f *testing.F) {
	f.Add([]byte{0x01, 0xE2, 0x3A}, int64(2))
	f.Add([]byte{0xFB}, int64(2))
	f.Add([]byte{0x7B}, int64(-2))
	f.Add([]byte{}, int64(1))
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0}, int64(0))
	f.Add([]byte{0x30, 0x39}, int64(math.MaxInt32)) // VariableScaleDecimal's scale is an int32
	f.Add([]byte{0x30, 0x39}, int64(math.MinInt32))
	f.Add([]byte{0x30, 0x39}, int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, b []byte, scale int64) {
		_, fixed, fixedErr := semantic("bytes", "org.apache.kafka.connect.data.Decimal", map[string]any{"scale": float64(scale)})
		got, err := variableScaleDecimal(map[string]any{"scale": scale, "value": b})
		inBounds := checkDecimal(b, scale) == nil
		if (err == nil) != inBounds {
			t.Fatalf("VariableScaleDecimal(% x, scale %d): error %v, in bounds %v", b, scale, err, inBounds)
		}
		if err != nil {
			return
		}
		if fixedErr != nil {
			t.Fatalf("Decimal with scale %d: %v", scale, fixedErr)
		}
		if fv, err := fixed(b); err != nil || fv != got {
			t.Fatalf("Decimal(% x, scale %d) = %v, %v; VariableScaleDecimal gave %q", b, scale, fv, err, got)
		}
		unscaled := new(big.Int).SetBytes(b)
		if len(b) > 0 && b[0]&0x80 != 0 {
			unscaled.Sub(unscaled, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
		}
		want := new(big.Rat).SetInt(unscaled)
		pow := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(max(scale, -scale)), nil))
		if scale > 0 {
			want.Quo(want, pow)
		} else {
			want.Mul(want, pow)
		}
		r, ok := new(big.Rat).SetString(got.(string))
		if !ok || r.Cmp(want) != 0 {
			t.Fatalf("decimal (% x, scale %d) spelled %q, want %s", b, scale, got, want.FloatString(int(max(scale, 0))))
		}
		if scale > 0 && !strings.Contains(got.(string), ".") || strings.HasPrefix(strings.TrimPrefix(got.(string), "-"), ".") {
			t.Fatalf("decimal (% x, scale %d) spelled %q: no digits before the point or none after", b, scale, got)
		}
	})
}

// FuzzSemanticTime checks Debezium's temporal conversions: a value is converted exactly (a
// duration spells its microseconds back) or refused, never wrapped around int64.
func FuzzSemanticTime(f *testing.F) {
	names := []string{
		"io.debezium.time.Date", "io.debezium.time.Time", "io.debezium.time.MicroTime", "io.debezium.time.NanoTime",
		"io.debezium.time.Timestamp", "io.debezium.time.MicroTimestamp", "io.debezium.time.NanoTimestamp",
		"io.debezium.time.MicroDuration", "io.debezium.time.NanoDuration",
		"org.apache.kafka.connect.data.Time", "org.apache.kafka.connect.data.Timestamp", "org.apache.kafka.connect.data.Date",
	}
	for i := range names {
		f.Add(uint8(i), int64(1714557600123))
		f.Add(uint8(i), int64(math.MaxInt64))
		f.Add(uint8(i), int64(math.MinInt64))
	}
	f.Add(uint8(1), int64(-1))
	f.Add(uint8(7), int64(90061500000))
	f.Fuzz(func(t *testing.T, which uint8, v int64) {
		name := names[int(which)%len(names)]
		ctype := "int64"
		if strings.HasSuffix(name, "Date") {
			ctype = "int32"
		}
		k, c, err := semantic(ctype, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c(v)
		if err != nil {
			return
		}
		var mul, div int64 = 1, 1
		switch {
		case k == change.KindDate:
			if out != int32(v) {
				t.Fatalf("%s(%d) = %v", name, v, out)
			}
			return
		case k == change.KindInterval:
			if strings.HasPrefix(name, "io.debezium.time.Nano") {
				div = 1000
			}
			if got, want := out.(string), microsISO(v/div); got != want || parseMicrosISO(t, got) != v/div {
				t.Fatalf("%s(%d) = %q, want %q", name, v, got, want)
			}
			return
		case strings.Contains(name, ".Nano"):
			div = 1000
		case !strings.Contains(name, ".Micro"):
			mul = 1000
		}
		got := out.(int64)
		if got != v*mul/div || (mul > 1 && got/mul != v) {
			t.Fatalf("%s(%d) = %d, want %d×%d/%d", name, v, got, v, mul, div)
		}
	})
}

// parseMicrosISO reads back microsISO's "PT<seconds>S".
func parseMicrosISO(t *testing.T, s string) int64 {
	secs, ok := strings.CutPrefix(s, "PT")
	secs, ok2 := strings.CutSuffix(secs, "S")
	r, ok3 := new(big.Rat).SetString(secs)
	if !ok || !ok2 || !ok3 {
		t.Fatalf("%q is not PT<seconds>S", s)
	}
	us := r.Mul(r, big.NewRat(1e6, 1))
	if !us.IsInt() || !us.Num().IsInt64() {
		t.Fatalf("%q is not a whole number of microseconds", s)
	}
	return us.Num().Int64()
}

// FuzzJSONSplit checks the JSON splitter of the decoding hot path against encoding/json: every
// valid object or array splits, into valid members that make up the same value, and strings read
// as encoding/json reads them. (On invalid JSON the splitter may succeed: members are validated
// when converted.)
func FuzzJSONSplit(f *testing.F) {
	for _, s := range []string{
		debeziumUpdate, debeziumKey, `{"a":"\u00e9\"}","b":[1,{"c":"]"}],"a":null}`, ` { } `, `null`,
		`[1, "x", null, [], {"k": [true]}]`, `"\ud800"`, `"tab\there"`, `{"":-0.5e+3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want any
		if json.Unmarshal(b, &want) != nil {
			_, _ = splitObject(b)
			_, _ = splitArray(b)
			_, _ = jsonString(b)
			return
		}
		switch w := want.(type) {
		case map[string]any:
			fields, err := splitObject(b)
			if err != nil {
				t.Fatalf("splitObject(%q): %v", b, err)
			}
			got := map[string]any{}
			for _, fl := range fields {
				var v any
				if err := json.Unmarshal(fl.raw, &v); err != nil {
					t.Fatalf("member %q of %q: %q is not JSON: %v", fl.name, b, fl.raw, err)
				}
				got[fl.name] = v
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("splitObject(%q) gave %v, encoding/json %v", b, got, w)
			}
		case []any:
			elems, err := splitArray(b)
			if err != nil || len(elems) != len(w) {
				t.Fatalf("splitArray(%q) = %d elements, %v; want %d", b, len(elems), err, len(w))
			}
			for i, e := range elems {
				var v any
				if err := json.Unmarshal(e, &v); err != nil || !reflect.DeepEqual(v, w[i]) {
					t.Fatalf("element %d of %q: %q, want %v", i, b, e, w[i])
				}
			}
		case string:
			if got, err := jsonString(b); err != nil || got != w {
				t.Fatalf("jsonString(%q) = %q, %v; want %q", b, got, err, w)
			}
		case nil:
			if fields, err := splitObject(b); fields != nil || err != nil {
				t.Fatalf("splitObject(%q) = %v, %v; want nothing", b, fields, err)
			}
		}
	})
}

// flatAvroValue is a row as Debezium's ExtractNewRecordState writes it with add.fields=op,lsn and
// delete.handling.mode=rewrite.
const flatAvroValue = `{"type":"record","name":"Value","namespace":"other.public.things","fields":[` +
	`{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null},` +
	`{"name":"__op","type":["null","string"],"default":null},{"name":"__lsn","type":["null","long"],"default":null},` +
	`{"name":"__deleted","type":["null","string"],"default":null}]}`

// FuzzDecodeRow feeds any record to DecodeRow (a sink with envelope: none). Besides not
// panicking: what decodes is an insert, update or read with a row, or a delete with the row it
// removes; no "__" metadata field is left in the row or the table, and every field of the row is
// a column of the table.
func FuzzDecodeRow(f *testing.F) {
	fc := newFuzzCodecs(f)
	str := func(s string) any { return map[string]any{"string": s} }
	for _, v := range fc.avroSeed(f, flatAvroValue,
		map[string]any{"id": int64(1), "note": str("n"), "__op": str("c"), "__lsn": map[string]any{"long": int64(7)}, "__deleted": str("false")},
		map[string]any{"id": int64(2), "note": nil, "__op": str("d"), "__lsn": nil, "__deleted": str("true")},
	) {
		f.Add([]byte(`{"id":1}`), v)
	}
	for _, v := range []string{
		`{"id":1,"note":"n"}`, `{"id":1,"__op":"u","__deleted":"false"}`, `{"id":1,"__deleted":true}`, ``,
		`{"schema":{"type":"struct","fields":[{"field":"id","type":"int64"},{"field":"__op","type":"string","optional":true}]},"payload":{"id":1,"__op":"r"}}`,
		`{"schema":null,"payload":null}`, `{"op":"c","after":{"id":1}}`,
	} {
		f.Add([]byte(`{"id":1}`), []byte(v))
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		ev, err := fc.dec.DecodeRow(context.Background(), fuzzTopic, key, value, nil)
		if err != nil {
			return
		}
		row := ev.After
		switch {
		case ev.Op == change.OpDelete && ev.After == nil && ev.Before != nil:
			row = ev.Before
		case ev.Op != change.OpDelete && ev.Before == nil && ev.After != nil:
		default:
			t.Fatalf("op %q with before %v and after %v", ev.Op, ev.Before, ev.After)
		}
		cols := map[string]bool{}
		for _, c := range ev.Table.Columns {
			if strings.HasPrefix(c.Name, metaPrefix) {
				t.Fatalf("metadata column %q in the table", c.Name)
			}
			cols[c.Name] = true
		}
		for name := range row {
			if !cols[name] {
				t.Fatalf("row field %q is not a column of the table (%v)", name, ev.Table.Columns)
			}
		}
	})
}
