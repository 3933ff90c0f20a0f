package codec

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/change"
)

func TestUnknownFingerprint(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	k, v, err := p.enc.Encode(ctx, "t", testEvents(everyKind())["insert"])
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder() // an empty store
	if err != nil {
		t.Fatal(err)
	}
	_, err = dec.Decode(ctx, "t", k, v)
	if !errors.Is(err, ErrUnknownSchema) {
		t.Fatalf("error = %v, want ErrUnknownSchema", err)
	}
	if fp := string(FingerprintKey(uint64Of(v))); !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), `topic "t"`) {
		t.Fatalf("error %q does not name the fingerprint %s and the topic", err, fp)
	}
	if _, _, err := dec.DecodeKey(ctx, "t", k); !errors.Is(err, ErrUnknownSchema) {
		t.Fatalf("DecodeKey error = %v, want ErrUnknownSchema", err)
	}
	// The caller refreshes its store from the _schemas topic and retries.
	for fp := range p.pub.calls {
		s, _ := p.pub.store.schemas.Load(fp)
		if _, err := dec.Schemas().AddRecord(FingerprintKey(fp), []byte(s.(*storedSchema).raw)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dec.Decode(ctx, "t", k, v); err != nil {
		t.Fatalf("after refresh: %v", err)
	}
}

func uint64Of(soeMsg []byte) uint64 {
	var fp uint64
	for i := 9; i >= 2; i-- {
		fp = fp<<8 | uint64(soeMsg[i])
	}
	return fp
}

func TestUnknownRegistryID(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro+registry")
	msg := []byte{0, 0, 0, 0x30, 0x39, 2} // id 12345
	_, err := p.dec.Decode(ctx, "t", nil, msg)
	if !errors.Is(err, ErrUnknownSchema) || !strings.Contains(err.Error(), "12345") {
		t.Fatalf("error = %v, want ErrUnknownSchema naming id 12345", err)
	}
	noReg, _ := NewDecoder()
	if _, err := noReg.Decode(ctx, "t", nil, msg); err == nil || !strings.Contains(err.Error(), "no registry") {
		t.Fatalf("error = %v, want 'no registry'", err)
	}
}

// TestRegistryFailuresAreUnavailable: only the registry's own "no such schema" (404 with error
// code 40403) is about the message; a server error, a rate limit or a proxy's bare 404 is
// ErrUnavailable, and the same message decodes once the registry answers.
func TestRegistryFailuresAreUnavailable(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro+registry")
	_, v, err := p.enc.Encode(ctx, "t", testEvents(everyKind())["insert"])
	if err != nil {
		t.Fatal(err)
	}
	var answer atomic.Value // func(http.ResponseWriter), nil to let the registry answer
	p.reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		fn, _ := answer.Load().(func(http.ResponseWriter))
		if fn == nil {
			return false
		}
		fn(w)
		return true
	})
	for name, fn := range map[string]func(http.ResponseWriter){
		"503":       func(w http.ResponseWriter) { http.Error(w, "unavailable", http.StatusServiceUnavailable) },
		"429":       func(w http.ResponseWriter) { http.Error(w, "slow down", http.StatusTooManyRequests) },
		"proxy 404": func(w http.ResponseWriter) { http.Error(w, "<html>not found</html>", http.StatusNotFound) },
	} {
		answer.Store(fn)
		_, err := p.dec.Decode(ctx, "t", nil, v)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownSchema) {
			t.Errorf("%s: error = %v, want ErrUnavailable only", name, err)
		}
	}
	answer.Store((func(http.ResponseWriter))(nil))
	if _, err := p.dec.Decode(ctx, "t", nil, v); err != nil {
		t.Fatalf("once the registry answers: %v", err)
	}
	if _, err := p.dec.Decode(ctx, "t", nil, []byte{0, 0, 0, 0x30, 0x39, 2}); !errors.Is(err, ErrUnknownSchema) || errors.Is(err, ErrUnavailable) {
		t.Errorf("unknown id: error = %v, want ErrUnknownSchema only", err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	k, v, err := p.enc.Encode(ctx, "t", testEvents(everyKind())["insert"])
	if err != nil {
		t.Fatal(err)
	}
	_ = k
	tests := []struct {
		name string
		msg  []byte
		err  string
	}{
		{"unknown magic", []byte{0x42, 1, 2}, "unrecognised encoding: first bytes 42 01 02"},
		{"short registry", []byte{0, 1}, "shorter than its 5-byte header"},
		{"short single-object", []byte{0xC3, 1, 2}, "shorter than its 10-byte header"},
		{"truncated body", v[:len(v)-3], "EOF"},
		{"trailing bytes", append(append([]byte{}, v...), 0), "trailing bytes"},
		{"bad JSON", []byte(`{"op":`), "decode JSON value"},
		{"JSON not an envelope", []byte(`{"id":1}`), `no "op"`},
		{"JSON unknown op", []byte(`{"op":"x","before":null,"after":null}`), `unsupported op "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.dec.Decode(ctx, "t", nil, tt.msg)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

func TestTombstones(t *testing.T) {
	ctx := context.Background()
	tbl := everyKind()
	for _, encoding := range []string{"avro", "avro+registry", "json"} {
		t.Run(encoding, func(t *testing.T) {
			p := newPair(t, encoding)
			key, err := p.enc.EncodeKey(ctx, "wh.public.every_kind", tbl, change.Row{"id": int64(9), "region": "us"})
			if err != nil {
				t.Fatal(err)
			}
			for _, value := range [][]byte{nil, {}} {
				ev, err := p.dec.Decode(ctx, "wh.public.every_kind", key, value)
				if ev != nil || err != nil {
					t.Fatalf("Decode(tombstone) = %v, %v; want nil, nil", ev, err)
				}
			}
			kt, row, err := p.dec.DecodeKey(ctx, "wh.public.every_kind", key)
			if err != nil {
				t.Fatal(err)
			}
			wantRow := change.Row{"id": int64(9), "region": "us"}
			if !reflect.DeepEqual(row, wantRow) {
				t.Fatalf("key row %v, want %v", row, wantRow)
			}
			if kt.Schema != "public" || kt.Name != "every_kind" || len(kt.Columns) != 2 || !kt.Columns[0].Key {
				t.Fatalf("key table %+v", kt)
			}
			if _, err := p.enc.EncodeKey(ctx, "t", tbl, change.Row{"id": int64(9)}); err == nil ||
				!strings.Contains(err.Error(), `key column "region" is NULL`) {
				t.Fatalf("EncodeKey with a missing key column: %v", err)
			}
		})
	}
}

// TestKeyOnlyBefore: with the default replica identity, a delete's before row has only the key
// columns; decoded Avro rows have every column, NULL where nothing was sent.
func TestKeyOnlyBefore(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, "avro")
	tbl := everyKind()
	ev := &change.Event{Op: change.OpDelete, Table: tbl, Before: change.Row{"id": int64(1), "region": "eu"},
		Source: testSource("false")}
	k, v, err := p.enc.Encode(ctx, "t", ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.dec.Decode(ctx, "t", k, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Before) != len(tbl.Columns) || got.Before["id"] != int64(1) || got.Before["txt"] != nil || got.After != nil {
		t.Fatalf("before = %v", got.Before)
	}
	if !reflect.DeepEqual(got.Key(), change.Row{"id": int64(1), "region": "eu"}) {
		t.Fatalf("Key() = %v", got.Key())
	}
}

func TestSchemaStore(t *testing.T) {
	p := newPair(t, "avro")
	_, valueJSON, err := p.enc.Schemas(everyKind())
	if err != nil {
		t.Fatal(err)
	}
	s := NewSchemaStore()
	fp, err := s.Add(valueJSON)
	if err != nil {
		t.Fatal(err)
	}
	key := FingerprintKey(fp)
	if len(key) != 16 || strings.ToLower(string(key)) != string(key) {
		t.Fatalf("FingerprintKey = %q", key)
	}
	if back, err := ParseFingerprintKey(key); err != nil || back != fp {
		t.Fatalf("ParseFingerprintKey(%s) = %x, %v", key, back, err)
	}
	if string(FingerprintKey(0x0123456789abcdef)) != "0123456789abcdef" {
		t.Fatalf("FingerprintKey(0x0123456789abcdef) = %s", FingerprintKey(0x0123456789abcdef))
	}
	got, ok := s.Lookup(fp)
	if !ok {
		t.Fatal("Lookup after Add failed")
	}
	again, _ := s.Add(valueJSON)
	if g2, _ := s.Lookup(again); g2 != got {
		t.Fatal("adding the same schema again replaced the parsed instance")
	}
	if _, err := s.AddRecord(FingerprintKey(fp+1), valueJSON); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("AddRecord with the wrong key: %v", err)
	}
	if _, ok := s.Lookup(fp + 1); ok {
		t.Fatal("a record with a wrong key was stored")
	}
	if _, err := s.AddRecord([]byte("xyz"), valueJSON); err == nil {
		t.Fatal("AddRecord accepted a malformed key")
	}
	if _, err := s.Add([]byte(`{"type":"record"`)); err == nil || !strings.Contains(err.Error(), "parse schema") {
		t.Fatalf("Add(bad JSON): %v", err)
	}
	if _, err := s.AddRecord(key, nil); err != nil {
		t.Fatalf("AddRecord(tombstone): %v", err)
	}
	if _, ok := s.Lookup(fp); !ok || s.Len() != 1 {
		t.Fatal("a tombstone removed a schema")
	}
	if SchemasTopic("wh") != "wh._schemas" {
		t.Fatal(SchemasTopic("wh"))
	}
}

func TestNewDecoderOptions(t *testing.T) {
	if _, err := NewDecoder(DecoderRegistry(nil)); err == nil {
		t.Fatal("NewDecoder accepted a nil registry client")
	}
	cl, _ := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	d, err := NewDecoder(DecoderRegistry(cl), Schemas(NewSchemaStore()))
	if err != nil || d == nil {
		t.Fatal(err)
	}
}
