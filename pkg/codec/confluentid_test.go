package codec

import (
	"context"
	"encoding/binary"
	"testing"
)

func TestConfluentID(t *testing.T) {
	tests := []struct {
		fp   uint64
		want uint32
	}{
		{0x0000000000000005, 5},
		{0xffffffffffffffff, 0x7fffffff}, // the sign bit is never set: ids are positive int32s
		{0x1234567880000000, 1},          // low 31 bits 0: 0 reads as "no id" to some clients
		{0x9f3c0a2b7d41e605, 0x7d41e605},
	}
	for _, tt := range tests {
		if got := ConfluentID(tt.fp); got != tt.want {
			t.Errorf("ConfluentID(%016x) = %d, want %d", tt.fp, got, tt.want)
		}
	}
}

// TestAvroConfluentFraming: the value starts with magic 0 and the ConfluentID of its schema's
// fingerprint, and a Decoder finds that id in its SchemaStore, without a registry.
func TestAvroConfluentFraming(t *testing.T) {
	ctx := context.Background()
	store := NewSchemaStore()
	enc, err := NewEncoder(Format(FormatAvroConfluent), TopicPrefix("wh"), SchemaPublisher(func(_ context.Context, _ uint64, schema []byte) error {
		_, err := store.Add(schema)
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl := everyKind()
	key, value, err := enc.Encode(ctx, "wh.public.every_kind", testEvents(tbl)["insert"])
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, valueJSON, err := enc.Schemas(tbl)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name        string
		msg, schema []byte
	}{{"key", key, keyJSON}, {"value", value, valueJSON}} {
		fp, err := NewSchemaStore().Add(m.schema)
		if err != nil {
			t.Fatal(err)
		}
		if m.msg[0] != 0 || binary.BigEndian.Uint32(m.msg[1:5]) != ConfluentID(fp) {
			t.Errorf("%s header % x, want 00 and id %d", m.name, m.msg[:5], ConfluentID(fp))
		}
	}
	dec, err := NewDecoder(Schemas(store))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.Decode(ctx, "wh.public.every_kind", key, value)
	if err != nil || ev == nil || ev.Table.Name != tbl.Name {
		t.Fatalf("Decode = %v, %v", ev, err)
	}
}
