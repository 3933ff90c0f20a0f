package codec

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// connectJSONSchema is a Kafka Connect schema as JsonConverter writes it (schemas.enable=true).
// Unknown members are refused, and parameters must be strings, as Connect's are.
type connectJSONSchema struct {
	Type       string              `json:"type"`
	Optional   *bool               `json:"optional"`
	Default    any                 `json:"default"`
	Name       string              `json:"name"`
	Version    int                 `json:"version"`
	Doc        string              `json:"doc"`
	Parameters map[string]string   `json:"parameters"`
	Fields     []connectJSONSchema `json:"fields"`
	Field      string              `json:"field"`
	Items      *connectJSONSchema  `json:"items"`
}

// connectRecord is one record read the way JsonConverter reads it: the schema and the payload
// converted per schema (integers int64, floats float64, bytes []byte, structs maps, Decimals their
// decimal text).
type connectRecord struct {
	schema  connectJSONSchema
	payload any
}

// readConnectJSON is a JsonConverter-style reader, independent of the codec's decoder: it parses
// {"schema","payload"} strictly and checks every payload value against its schema.
func readConnectJSON(b []byte) (*connectRecord, error) {
	var env struct {
		Schema  json.RawMessage `json:"schema"`
		Payload json.RawMessage `json:"payload"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	var rec connectRecord
	dec = json.NewDecoder(bytes.NewReader(env.Schema))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec.schema); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	var err error
	rec.payload, err = connectValue(&rec.schema, env.Payload)
	return &rec, err
}

func connectValue(s *connectJSONSchema, raw json.RawMessage) (any, error) {
	if s.Optional == nil {
		return nil, fmt.Errorf("schema of %q has no optional member", s.Field)
	}
	if len(raw) == 0 || string(raw) == "null" {
		if !*s.Optional {
			return nil, fmt.Errorf("null for the required %q", s.Field)
		}
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	switch s.Type {
	case "int8", "int16", "int32", "int64":
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return nil, err
		}
		bits := map[string]int{"int8": 8, "int16": 16, "int32": 32, "int64": 64}[s.Type]
		return strconv.ParseInt(n.String(), 10, bits)
	case "float", "double":
		var f float64
		err := json.Unmarshal(raw, &f)
		return f, err
	case "boolean":
		var v bool
		err := json.Unmarshal(raw, &v)
		return v, err
	case "string":
		var v string
		err := json.Unmarshal(raw, &v)
		return v, err
	case "bytes":
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || s.Name != decimalName {
			return b, err
		}
		scale, err := strconv.Atoi(s.Parameters["scale"])
		if err != nil {
			return nil, fmt.Errorf("Decimal %q: scale parameter: %w", s.Field, err)
		}
		return decimalText(b, scale), nil
	case "array":
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil || s.Items == nil {
			return nil, fmt.Errorf("array %q: %v (items %v)", s.Field, err, s.Items)
		}
		out := make([]any, len(elems))
		for i, e := range elems {
			v, err := connectValue(s.Items, e)
			if err != nil {
				return nil, fmt.Errorf("%q[%d]: %w", s.Field, i, err)
			}
			out[i] = v
		}
		return out, nil
	case "struct":
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(s.Fields))
		for i := range s.Fields {
			f := &s.Fields[i]
			v, err := connectValue(f, members[f.Field])
			if err != nil {
				return nil, fmt.Errorf("%s.%w", s.Name, err)
			}
			out[f.Field] = v
			delete(members, f.Field)
		}
		for name := range members {
			return nil, fmt.Errorf("struct %s: member %q is not in the schema", s.Name, name)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%q: unknown Connect type %q", s.Field, s.Type)
}

// decimalText spells an unscaled two's-complement value at scale with math/big, as Java's
// BigDecimal(new BigInteger(b), scale).toPlainString() does.
func decimalText(b []byte, scale int) string {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	r := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	return r.FloatString(scale)
}

// wantConnect is the Connect type and logical name each kind must be written with: Debezium's
// for the PostgreSQL types behind the kinds.
var wantConnect = map[change.Kind][2]string{
	change.KindInt16: {"int16", ""}, change.KindInt32: {"int32", ""}, change.KindInt64: {"int64", ""},
	change.KindFloat32: {"float", ""}, change.KindFloat64: {"double", ""},
	change.KindNumeric:     {"bytes", "org.apache.kafka.connect.data.Decimal"},
	change.KindBool:        {"boolean", ""},
	change.KindString:      {"string", ""},
	change.KindEnum:        {"string", "io.debezium.data.Enum"},
	change.KindBytes:       {"bytes", ""},
	change.KindDate:        {"int32", "io.debezium.time.Date"},
	change.KindTime:        {"int64", "io.debezium.time.MicroTime"},
	change.KindTimestamp:   {"int64", "io.debezium.time.MicroTimestamp"},
	change.KindTimestampTZ: {"string", "io.debezium.time.ZonedTimestamp"},
	change.KindInterval:    {"string", "io.debezium.time.Interval"},
	change.KindUUID:        {"string", "io.debezium.data.Uuid"},
	change.KindJSON:        {"string", "io.debezium.data.Json"},
}

// checkConnectField checks a column's field schema: type, logical name, optionality.
func checkConnectField(t *testing.T, f *connectJSONSchema, c *change.Column, optional bool) {
	t.Helper()
	s, k := f, c.Kind
	if c.Kind == change.KindArray {
		if f.Type != "array" || f.Items == nil {
			t.Fatalf("column %q: type %q, want array", c.Name, f.Type)
		}
		s, k = f.Items, c.Elem
	}
	if want := wantConnect[k]; s.Type != want[0] || s.Name != want[1] {
		t.Errorf("column %q (%s): %s %q, want %s %q", c.Name, k, s.Type, s.Name, want[0], want[1])
	}
	if k == change.KindNumeric && s.Parameters["scale"] == "" {
		t.Errorf("column %q: Decimal without a scale parameter", c.Name)
	}
	if *f.Optional != optional {
		t.Errorf("column %q: optional %v, want %v", c.Name, *f.Optional, optional)
	}
}

// connectPlain is the JsonConverter reader's form of a row value of kind k.
func connectPlain(k, elem change.Kind, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = connectPlain(elem, 0, e)
		}
		return out
	}
	return v
}

// TestDebeziumJSONIsConnectJSON reads what the debezium-json encoder writes with a
// JsonConverter-style reader: Debezium's names for every kind, every value as its schema says.
func TestDebeziumJSONIsConnectJSON(t *testing.T) {
	ctx := context.Background()
	enc, err := NewEncoder(TopicPrefix(testPrefix), Format(FormatDebeziumJSON))
	if err != nil {
		t.Fatal(err)
	}
	tbl := everyKind()
	events := testEvents(tbl)
	for _, name := range sortedKeys(events) {
		ev := events[name]
		t.Run(name, func(t *testing.T) {
			key, value, err := enc.Encode(ctx, "wh.public.every_kind", ev)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := readConnectJSON(value)
			if err != nil {
				t.Fatalf("%v\n%s", err, value)
			}
			s := &rec.schema
			if s.Type != "struct" || s.Name != "wh.public.every_kind.Envelope" || len(s.Fields) < 5 {
				t.Fatalf("envelope schema %s %q with %d fields", s.Type, s.Name, len(s.Fields))
			}
			byField := map[string]*connectJSONSchema{}
			for i := range s.Fields {
				byField[s.Fields[i].Field] = &s.Fields[i]
			}
			for _, side := range []string{"before", "after"} {
				f := byField[side]
				if f == nil || f.Name != "wh.public.every_kind.Value" || len(f.Fields) != len(tbl.Columns) {
					t.Fatalf("%s schema: %+v", side, f)
				}
				for i := range tbl.Columns {
					checkConnectField(t, &f.Fields[i], &tbl.Columns[i], !tbl.Columns[i].Key)
				}
			}
			if src := byField["source"]; src == nil || src.Name != "io.debezium.connector.postgresql.Source" {
				t.Fatalf("source schema: %+v", src)
			}
			payload := rec.payload.(map[string]any)
			if payload["op"] != string(ev.Op) {
				t.Errorf("op %v, want %s", payload["op"], ev.Op)
			}
			for side, row := range map[string]change.Row{"before": ev.Before, "after": ev.After} {
				got, _ := payload[side].(map[string]any)
				if (got == nil) != (row == nil) {
					t.Fatalf("%s: %v, want %v", side, got, row)
				}
				for _, c := range tbl.Columns {
					want := connectPlain(c.Kind, c.Elem, row[c.Name])
					if side == "after" && containsString(ev.UnchangedToast, c.Name) {
						want = DefaultUnavailableValue // Debezium's mark of an unchanged TOASTed column
					}
					if row != nil && !reflect.DeepEqual(got[c.Name], want) {
						t.Errorf("%s.%s = %#v, want %#v", side, c.Name, got[c.Name], want)
					}
				}
			}
			if ev.Op == change.OpTruncate {
				return
			}
			krec, err := readConnectJSON(key)
			if err != nil {
				t.Fatalf("key: %v\n%s", err, key)
			}
			if krec.schema.Name != "wh.public.every_kind.Key" || *krec.schema.Optional ||
				!reflect.DeepEqual(krec.payload, map[string]any{"id": int64(42), "region": "eu"}) {
				t.Fatalf("key %s: %+v", key, krec)
			}
		})
	}
}

// TestRoundTripDebeziumJSON reads what the debezium-json encoder writes back with backflow's
// decoder: the same events, but for the PostgreSQL type names the format does not carry.
func TestRoundTripDebeziumJSON(t *testing.T) {
	ctx := context.Background()
	enc, err := NewEncoder(TopicPrefix(testPrefix), Format(FormatDebeziumJSON))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := NewDecoder()
	tbl := everyKind()
	wantTable := &change.Table{Schema: tbl.Schema, Name: tbl.Name}
	for _, c := range tbl.Columns {
		c.PGType, c.TypeOID = "", 0
		wantTable.Columns = append(wantTable.Columns, c)
	}
	events := testEvents(tbl)
	for _, name := range sortedKeys(events) {
		ev := events[name]
		t.Run(name, func(t *testing.T) {
			key, value, err := enc.Encode(ctx, "wh.public.every_kind", ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.Decode(ctx, "wh.public.every_kind", key, value)
			if err != nil {
				t.Fatal(err)
			}
			want := *ev
			want.Table = wantTable
			if ev.Op == change.OpTruncate { // no key to say which columns are key columns
				want.Table = &change.Table{Schema: tbl.Schema, Name: tbl.Name}
				for _, c := range wantTable.Columns {
					c.Key = false
					want.Table.Columns = append(want.Table.Columns, c)
				}
			}
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("got  %s\nwant %s", dump(got), dump(&want))
			}
		})
	}
}

// TestDecimalBytes checks the unscaled values against Java's BigInteger.toByteArray.
func TestDecimalBytes(t *testing.T) {
	tests := []struct {
		s     string
		scale int
		want  []byte
	}{
		{"1234.50", 2, []byte{0x01, 0xE2, 0x3A}},
		{"-0.05", 2, []byte{0xFB}},
		{"0", 0, []byte{0x00}},
		{"127", 0, []byte{0x7F}},
		{"128", 0, []byte{0x00, 0x80}},
		{"-128", 0, []byte{0x80}},
		{"-129", 0, []byte{0xFF, 0x7F}},
		{"-256", 0, []byte{0xFF, 0x00}},
		{"12.3", 3, []byte{0x30, 0x0C}},
		{"+5", 1, []byte{0x32}},
	}
	for _, tt := range tests {
		got, err := decimalBytes(tt.s, tt.scale)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("decimalBytes(%q, %d) = % x, %v; want % x", tt.s, tt.scale, got, err, tt.want)
		}
		if back := decimalString(got, tt.scale); back != decimalText(got, tt.scale) {
			t.Errorf("decimalString(% x, %d) = %q, math/big says %q", got, tt.scale, back, decimalText(got, tt.scale))
		}
	}
	for _, bad := range []string{"1.234", "", "-", "1e5", "--1", "1_000", "NaN"} {
		if _, err := decimalBytes(bad, 2); err == nil {
			t.Errorf("decimalBytes(%q, 2): no error", bad)
		}
	}
}
