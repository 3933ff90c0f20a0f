package codec

import (
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

func TestRoundTripAvro(t *testing.T) {
	ctx := context.Background()
	for _, encoding := range []string{"avro", "avro+registry"} {
		p := newPair(t, encoding)
		tbl := everyKind()
		events := testEvents(tbl)
		for _, name := range sortedKeys(events) {
			ev := events[name]
			t.Run(encoding+"/"+name, func(t *testing.T) {
				topic := testPrefix + ".public.every_kind"
				key, value, err := p.enc.Encode(ctx, topic, ev)
				if err != nil {
					t.Fatal(err)
				}
				switch encoding {
				case "avro":
					if value[0] != 0xC3 || value[1] != 0x01 {
						t.Fatalf("value starts % x, want c3 01", value[:2])
					}
				case "avro+registry":
					if value[0] != 0 {
						t.Fatalf("value starts % x, want 00", value[:1])
					}
				}
				if ev.Op == change.OpTruncate {
					if key != nil {
						t.Fatalf("truncate has key % x, want nil", key)
					}
				} else if key == nil {
					t.Fatal("nil key")
				}
				got, err := p.dec.Decode(ctx, topic, key, value)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, ev) {
					t.Fatalf("decoded event differs\n got: %s\nwant: %s", dump(got), dump(ev))
				}
				if key == nil {
					return
				}
				kt, krow, err := p.dec.DecodeKey(ctx, topic, key)
				if err != nil {
					t.Fatal(err)
				}
				wantRow := change.Row{"id": int64(42), "region": "eu"}
				wantTable := &change.Table{Schema: "public", Name: "every_kind", Columns: tbl.KeyColumns()}
				if !reflect.DeepEqual(krow, wantRow) || !reflect.DeepEqual(kt, wantTable) {
					t.Fatalf("key decoded to %+v %v, want %+v %v", kt, krow, wantTable, wantRow)
				}
			})
		}
	}
}

// TestRoundTripTablePointer checks that events of one writer schema share one decoded table.
func TestRoundTripTablePointer(t *testing.T) {
	ctx := context.Background()
	for _, encoding := range []string{"avro", "avro+registry", "json"} {
		t.Run(encoding, func(t *testing.T) {
			p := newPair(t, encoding)
			ev := testEvents(everyKind())["insert"]
			var tables []*change.Table
			for range 3 {
				k, v, err := p.enc.Encode(ctx, "wh.public.every_kind", ev)
				if err != nil {
					t.Fatal(err)
				}
				got, err := p.dec.Decode(ctx, "wh.public.every_kind", k, v)
				if err != nil {
					t.Fatal(err)
				}
				tables = append(tables, got.Table)
			}
			if tables[0] != tables[1] || tables[1] != tables[2] {
				t.Fatal("decoded events of one schema have different *Table pointers")
			}
		})
	}
}

func TestRoundTripJSON(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "json")
	tbl := everyKind()
	events := testEvents(tbl)
	for _, name := range sortedKeys(events) {
		ev := events[name]
		t.Run(name, func(t *testing.T) {
			topic := "wh.public.every_kind"
			key, value, err := p.enc.Encode(ctx, topic, ev)
			if err != nil {
				t.Fatal(err)
			}
			if value[0] != '{' {
				t.Fatalf("value starts %q", value[:1])
			}
			if ev.Op == change.OpTruncate {
				if key != nil {
					t.Fatalf("truncate has key %s", key)
				}
			} else if string(key) != `{"id":42,"region":"eu"}` {
				t.Fatalf("key = %s", key)
			}
			got, err := p.dec.Decode(ctx, topic, key, value)
			if err != nil {
				t.Fatal(err)
			}
			want := jsonView(ev, key != nil)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded event differs\nvalue: %s\n got: %s\nwant: %s", value, dump(got), dump(want))
			}
		})
	}
}

// jsonView is what a schemaless JSON round trip keeps of ev: integers become int64, floats
// float64, bytes their base64 text, every other kind its string; kinds are inferred from the
// values (a column NULL everywhere is a string column); key flags come from the key.
func jsonView(ev *change.Event, keyed bool) *change.Event {
	out := *ev
	t := &change.Table{Schema: ev.Source.Schema, Name: ev.Source.Table}
	conv := func(v any) (any, change.Kind) {
		switch x := v.(type) {
		case int32:
			return int64(x), change.KindInt64
		case int64:
			return x, change.KindInt64
		case float32:
			f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
			return f, change.KindFloat64
		case float64:
			return x, change.KindFloat64
		case bool:
			return x, change.KindBool
		case []byte:
			return base64.StdEncoding.EncodeToString(x), change.KindString
		case string:
			return x, change.KindString
		}
		panic(fmt.Sprintf("jsonView: %T", v))
	}
	convRow := func(r change.Row) change.Row {
		if r == nil {
			return nil
		}
		o := change.Row{}
		for k, v := range r {
			switch x := v.(type) {
			case nil:
				o[k] = nil
			case []any:
				a := make([]any, len(x))
				for i, e := range x {
					if e != nil {
						a[i], _ = conv(e)
					}
				}
				o[k] = a
			default:
				o[k], _ = conv(v)
			}
		}
		return o
	}
	if ev.After != nil || ev.Before != nil {
		for _, c := range ev.Table.Columns {
			col := change.Column{Name: c.Name, Kind: change.KindString, Key: c.Key && keyed}
			for _, r := range []change.Row{ev.After, ev.Before} {
				v := r[c.Name]
				if v == nil {
					continue
				}
				if a, ok := v.([]any); ok {
					col.Kind, col.Elem = change.KindArray, change.KindString
					for _, e := range a {
						if e != nil {
							_, col.Elem = conv(e)
							break
						}
					}
				} else {
					_, col.Kind = conv(v)
				}
				break
			}
			t.Columns = append(t.Columns, col)
		}
	}
	out.Table = t
	out.Before, out.After = convRow(ev.Before), convRow(ev.After)
	return &out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func dump(ev *change.Event) string {
	if ev == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("op=%s ts=%d toast=%q source=%+v\n", ev.Op, ev.TsMs, ev.UnchangedToast, ev.Source)
	if ev.Table != nil {
		s += fmt.Sprintf("table %s.%s:\n", ev.Table.Schema, ev.Table.Name)
		for _, c := range ev.Table.Columns {
			s += fmt.Sprintf("  %+v\n", c)
		}
	}
	for _, side := range []struct {
		n string
		r change.Row
	}{{"before", ev.Before}, {"after", ev.After}} {
		s += side.n + ":"
		if side.r == nil {
			s += " nil\n"
			continue
		}
		s += "\n"
		for _, k := range sortedKeys(side.r) {
			s += fmt.Sprintf("  %s = %#v\n", k, side.r[k])
		}
	}
	return s
}
