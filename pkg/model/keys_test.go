package model

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/backflow-dev/backflow/pkg/config"
)

// TestKeyEncodingOrder: encoded keys sort as PostgreSQL sorts the tuples: integers by value,
// text by bytes, columns left to right.
func TestKeyEncodingOrder(t *testing.T) {
	enc := keyEnc("it")
	tuples := [][2]string{{"-9223372036854775808", "b"}, {"-5", ""}, {"-5", "a"}, {"-5", "ab"}, {"0", "Z"}, {"7", "a"}, {"10", "a"}, {"9223372036854775807", ""}}
	var keys [][]byte
	for _, tu := range tuples {
		k, err := enc.encode(nil, [][]byte{[]byte(tu[0]), []byte(tu[1])})
		if err != nil {
			t.Fatal(err)
		}
		parts, err := enc.parts(k)
		if err != nil || string(parts[0]) != tu[0] || string(parts[1]) != tu[1] {
			t.Fatalf("%v: parts %q, %v", tu, parts, err)
		}
		keys = append(keys, k)
	}
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Fatalf("encoded keys out of the tuples' order: %q", keys)
	}
}

// FuzzKeyParts: a key read back from a state file or a record header never panics the parser,
// and what it parses encodes back to the same bytes.
func FuzzKeyParts(f *testing.F) {
	f.Add("it", []byte("\x80\x00\x00\x00\x00\x00\x00\x05abc\x00"))
	f.Add("t", []byte("x\x00"))
	f.Add("ii", []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, enc string, key []byte) {
		e := keyEnc(enc)
		parts, err := e.parts(key)
		if err != nil {
			return
		}
		back, err := e.encode(nil, parts)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("%q: parts %q encode to %q, %v", key, parts, back, err)
		}
	})
}

// TestIntegerAndCompositeKeys: a model keyed by an integer and a text column, with negative
// numbers, is ordered by PostgreSQL as the state is: its diffs are exact.
func TestIntegerAndCompositeKeys(t *testing.T) {
	e := newEnv(t, config.Model{Name: "stock", SQL: "SELECT id, region, qty FROM public.stock", Key: []string{"id", "region"}})
	e.exec(`CREATE TABLE public.stock (id int, region text, qty int, PRIMARY KEY (id, region))`)
	e.exec(`INSERT INTO public.stock SELECT g, r, g FROM generate_series(-50, 50) g, unnest(ARRAY['eu', 'us', 'US', 'e']) r`)
	r := e.runner()
	if res := e.mustRun(r, "stock"); res.Changes["r"] != 404 {
		t.Fatalf("first run: %+v", res)
	}
	e.exec(`UPDATE public.stock SET qty = qty + 1 WHERE id IN (-50, -1, 10) AND region = 'us'`)
	e.exec(`DELETE FROM public.stock WHERE id = -7 AND region = 'e'`)
	e.exec(`INSERT INTO public.stock VALUES (-100, 'eu', 1), (100, 'zz', 1)`)
	res := e.mustRun(r, "stock")
	if want := map[string]int64{"u": 3, "d": 1, "c": 2}; !maps.Equal(res.Changes, want) {
		t.Fatalf("second run: %+v, want %v", res.Changes, want)
	}
	// The key's type changes from integer to text: the state is converted, nothing is lost.
	e.exec(`ALTER TABLE public.stock ALTER COLUMN id TYPE text`)
	e.exec(`DELETE FROM public.stock WHERE id = '100'`)
	res = e.mustRun(r, "stock")
	if res.Changes["d"] != 1 {
		t.Fatalf("after the key's type changed: %+v", res.Changes)
	}
	if res := e.mustRun(r, "stock"); len(res.Changes) != 0 {
		t.Fatalf("run after the type change: %+v", res.Changes)
	}
}
