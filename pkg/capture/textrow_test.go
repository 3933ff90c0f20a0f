package capture

import (
	"bytes"
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
)

// textRowCase encodes the row (key, text) of a table whose second column has kind k, through
// a textRow, and as the same row decoded first (what every other change goes through).
type textRowCase struct {
	t   *change.Table
	enc *codec.RowEncoder
	dec *decoder
}

func newTextRowCase(tb testing.TB, k change.Kind) textRowCase {
	c := change.Column{Name: "c", Kind: k}
	if k == change.KindArray {
		c.Elem = change.KindInt32
	}
	t := &change.Table{Schema: "public", Name: "t", Columns: []change.Column{{Name: "id", Kind: change.KindInt64, Key: true}, c}}
	enc, err := codec.NewEncoder(codec.Format(codec.FormatAvro))
	if err != nil {
		tb.Fatal(err)
	}
	ev := &change.Event{Op: change.OpRead, Table: t, Source: change.Source{Connector: "postgresql", Name: "wh", DB: "db", Schema: "public", Table: "t", Snapshot: "true"}}
	rows, err := enc.Rows(context.Background(), "wh.public.t", ev)
	if err != nil {
		tb.Fatal(err)
	}
	return textRowCase{t: t, enc: rows, dec: newDecoder()}
}

// check fails unless the textRow's key and value are those of the decoded row, or both fail.
func (c textRowCase) check(tb testing.TB, key string, text []byte) {
	tb.Helper()
	ctx := context.Background()
	raw := [][]byte{[]byte(key), text}
	gotKey, gotValue, gotErr := c.enc.EncodeFrom(ctx, &textRow{cols: c.t.Columns, raw: raw, dec: c.dec})
	gotKey, gotValue = bytes.Clone(gotKey), bytes.Clone(gotValue)
	vals := make([]any, 2)
	var err error
	if vals[0], err = c.dec.decode(c.t.Columns[0], raw[0]); err == nil && text != nil {
		vals[1], err = c.dec.decode(c.t.Columns[1], text)
	}
	var wantKey, wantValue []byte
	if err == nil {
		wantKey, wantValue, err = c.enc.Encode(ctx, vals)
	}
	switch {
	case (gotErr == nil) != (err == nil):
		tb.Fatalf("%s %q (key %q): from the text: error %v; decoded first: error %v", c.t.Columns[1].Kind, text, key, gotErr, err)
	case err == nil && (!bytes.Equal(gotKey, wantKey) || !bytes.Equal(gotValue, wantValue)):
		tb.Fatalf("%s %q (key %q): from the text\nkey   %x\nvalue %x\ndecoded first\nkey   %x\nvalue %x", c.t.Columns[1].Kind, text, key, gotKey, gotValue, wantKey, wantValue)
	}
}

// A snapshot's rows go from their text to Avro without a Go value in between (textRow):
// what it writes is what decoding first writes, byte for byte, and what does not decode fails
// either way. Keys outside int64 and integers at and past their bounds included.
func TestTextRowWritesWhatDecodingWrites(t *testing.T) {
	extra := map[change.Kind][]string{
		change.KindInt16:       {"2147483648", "-2147483649", "1.5", "", "-", "+1", "0x10", " 1", "00042"},
		change.KindInt32:       {"2147483648", "-2147483649", "99999999999999999999"},
		change.KindInt64:       {"9223372036854775808", "-9223372036854775809", "-0", "12345678901234567890"},
		change.KindTimestampTZ: {"2024-02-30 00:00:00+00", "2024-02-29 13:45:06.1234567+00", "2024-02-29 13:45:06.+00", "2024-02-29 13:45:06+00", "294277-01-01 00:00:00+00"},
	}
	for _, k := range fuzzKinds {
		c := newTextRowCase(t, k)
		for _, text := range append(pgForms[k], extra[k]...) {
			for _, key := range []string{"42", "-9223372036854775808", "9223372036854775808", "x"} {
				c.check(t, key, []byte(text))
			}
		}
		c.check(t, "7", nil) // NULL
	}
}

// FuzzTextRow: any text, as a column of any kind or as the key, writes what decoding it first
// writes, or fails both ways.
func FuzzTextRow(f *testing.F) {
	for i, k := range fuzzKinds {
		for _, s := range pgForms[k] {
			f.Add(uint8(i), "1", s)
		}
	}
	f.Add(uint8(2), "-9223372036854775808", "9223372036854775807")
	cases := make([]textRowCase, len(fuzzKinds))
	for i, k := range fuzzKinds {
		cases[i] = newTextRowCase(f, k)
	}
	f.Fuzz(func(t *testing.T, ki uint8, key, text string) {
		cases[int(ki)%len(cases)].check(t, key, []byte(text))
	})
}
