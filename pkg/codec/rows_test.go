package codec

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// values returns row in t's column order.
func values(t *change.Table, row change.Row) []any {
	vals := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		vals[i] = row[c.Name]
	}
	return vals
}

// randomRow is fullRow with each non-key column NULL or changed at random.
func randomRow(rng *rand.Rand) change.Row {
	row := fullRow()
	row["id"] = rng.Int64() - rng.Int64()
	row["region"] = strings.Repeat("r", rng.IntN(300))
	for name := range row {
		if name != "id" && name != "region" && rng.IntN(3) == 0 {
			row[name] = nil
		}
	}
	if row["i4"] != nil {
		row["i4"] = rng.Int32() - rng.Int32()
	}
	if row["txt"] != nil {
		row["txt"] = strings.Repeat("é", rng.IntN(2000))
	}
	if row["f8"] != nil {
		row["f8"] = rng.NormFloat64()
	}
	return row
}

// RowEncoder's records are Encode's, byte for byte, in every format, for reads and inserts,
// with their source blocks and unchanged-TOAST lists.
func TestRowEncoderMatchesEncode(t *testing.T) {
	ctx := context.Background()
	for _, format := range []string{"avro", "avro+registry", "json"} {
		t.Run(format, func(t *testing.T) {
			pair := newPair(t, format)
			tbl := everyKind()
			rng := rand.New(rand.NewPCG(1, 2))
			for name, ev := range testEvents(tbl) {
				if ev.Op != change.OpRead && ev.Op != change.OpCreate {
					continue
				}
				rows, err := pair.enc.Rows(ctx, "wh.public.every_kind", ev)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for i := range 200 {
					row := randomRow(rng)
					if i == 0 {
						row = nullRow(tbl)
					}
					want := *ev
					want.After = row
					wantKey, wantValue, err := pair.enc.Encode(ctx, "wh.public.every_kind", &want)
					if err != nil {
						t.Fatal(err)
					}
					key, value, err := rows.Encode(ctx, values(tbl, row))
					if err != nil {
						t.Fatalf("%s row %d: %v", name, i, err)
					}
					if !bytes.Equal(key, wantKey) || !bytes.Equal(value, wantValue) {
						t.Fatalf("%s row %d: RowEncoder wrote\nkey   %x\nvalue %x\nEncode wrote\nkey   %x\nvalue %x", name, i, key, value, wantKey, wantValue)
					}
					for _, writes := range []bool{false, true} {
						key, value, err := rows.EncodeFrom(ctx, valueSource{t: tbl, vals: values(tbl, row), writes: writes})
						if err != nil {
							t.Fatalf("%s row %d: EncodeFrom: %v", name, i, err)
						}
						if !bytes.Equal(key, wantKey) || !bytes.Equal(value, wantValue) {
							t.Fatalf("%s row %d: EncodeFrom (writing its columns: %v) wrote\nkey   %x\nvalue %x\nEncode wrote\nkey   %x\nvalue %x", name, i, writes, key, value, wantKey, wantValue)
						}
					}
				}
			}
		})
	}
}

// valueSource is a RowSource of values in the forms of package change. With writes it writes
// the columns of the simple Avro forms itself, in them; without, none.
type valueSource struct {
	t      *change.Table
	vals   []any
	writes bool
}

func (s valueSource) Null(i int) bool          { return s.vals[i] == nil }
func (s valueSource) Value(i int) (any, error) { return s.vals[i], nil }

func (s valueSource) WriteColumn(w *avro.Writer, i int) (bool, error) {
	if !s.writes {
		return false, nil
	}
	switch v := s.vals[i]; AvroForm(s.t.Columns[i].Kind) {
	case "int":
		w.WriteInt(v.(int32))
	case "long":
		w.WriteLong(v.(int64))
	case "string":
		w.WriteString(v.(string))
	default:
		return false, nil
	}
	return true, nil
}

// failingSource fails at its column fail.
type failingSource struct {
	valueSource
	fail int
}

func (s failingSource) WriteColumn(w *avro.Writer, i int) (bool, error) {
	if i == s.fail {
		return false, errors.New("no such value")
	}
	return s.valueSource.WriteColumn(w, i)
}

func TestRowEncoderErrors(t *testing.T) {
	ctx := context.Background()
	pair := newPair(t, "avro")
	tbl := everyKind()
	evs := testEvents(tbl)
	for _, op := range []string{"update toast", "delete", "truncate"} {
		if _, err := pair.enc.Rows(ctx, "wh.public.every_kind", evs[op]); err == nil {
			t.Errorf("Rows of a %s event: no error", op)
		}
	}
	rows, err := pair.enc.Rows(ctx, "wh.public.every_kind", evs["read"])
	if err != nil {
		t.Fatal(err)
	}
	full := values(tbl, fullRow())
	nullKey := values(tbl, fullRow())
	nullKey[1] = nil
	badType := values(tbl, fullRow())
	badType[3] = "not an int"
	for name, tc := range map[string]struct {
		vals []any
		want string
	}{
		"too few values": {full[1:], "21 values for 22 columns"},
		"NULL key":       {nullKey, `key column "region" is NULL`},
		"wrong type":     {badType, `column "i4"`},
	} {
		if _, _, err := rows.Encode(ctx, tc.vals); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
	for name, tc := range map[string]struct {
		src  RowSource
		want string
	}{
		"NULL key":        {valueSource{t: tbl, vals: nullKey, writes: true}, `key column "region" is NULL`},
		"wrong type":      {valueSource{t: tbl, vals: badType}, `column "i4"`},
		"column it fails": {failingSource{valueSource{t: tbl, vals: full, writes: true}, 3}, `column "i4" (int32): no such value`},
	} {
		if _, _, err := rows.EncodeFrom(ctx, tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EncodeFrom, %s: error %v, want one with %q", name, err, tc.want)
		}
	}
}
