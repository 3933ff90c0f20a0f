package codec

import (
	"context"
	"encoding/json"
	"testing"
)

// BenchmarkEncodeAvro encodes the 20-column example update (key and value, single-object
// encoding) with schemas cached, as the capture hot path does.
func BenchmarkEncodeAvro(b *testing.B) {
	benchEncode(b, "avro")
}

// BenchmarkEncodeAvroRegistry is BenchmarkEncodeAvro in the Confluent wire format (ids cached).
func BenchmarkEncodeAvroRegistry(b *testing.B) {
	benchEncode(b, "avro+registry")
}

// BenchmarkEncodeJSON is BenchmarkEncodeAvro for the JSON format.
func BenchmarkEncodeJSON(b *testing.B) {
	benchEncode(b, "json")
}

func benchEncode(b *testing.B, encoding string) {
	ctx := context.Background()
	p := newPair(b, encoding)
	ev := exampleEvent()
	k, v, err := p.enc.Encode(ctx, "wh.public.inventory", ev)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(k) + len(v)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := p.enc.Encode(ctx, "wh.public.inventory", ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEncodeAvroSerial is BenchmarkEncodeAvro on one goroutine.
func BenchmarkEncodeAvroSerial(b *testing.B) {
	ctx := context.Background()
	p := newPair(b, "avro")
	ev := exampleEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.enc.Encode(ctx, "wh.public.inventory", ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAvro decodes the value BenchmarkEncodeAvro writes, as sinks do.
func BenchmarkDecodeAvro(b *testing.B) {
	benchDecode(b, "avro")
}

// BenchmarkDecodeJSON is BenchmarkDecodeAvro for the JSON format.
func BenchmarkDecodeJSON(b *testing.B) {
	benchDecode(b, "json")
}

func benchDecode(b *testing.B, encoding string) {
	ctx := context.Background()
	p := newPair(b, encoding)
	k, v, err := p.enc.Encode(ctx, "wh.public.inventory", exampleEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.dec.Decode(ctx, "wh.public.inventory", k, v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRowJSON decodes the "after" row of BenchmarkDecodeJSON's value without its
// envelope, as a sink with envelope: none does: compare the two.
func BenchmarkDecodeRowJSON(b *testing.B) {
	ctx := context.Background()
	p := newPair(b, "json")
	k, v, err := p.enc.Encode(ctx, "wh.public.inventory", exampleEvent())
	if err != nil {
		b.Fatal(err)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(v, &env); err != nil {
		b.Fatal(err)
	}
	row := env["after"]
	b.SetBytes(int64(len(row)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.dec.DecodeRow(ctx, "wh.public.inventory", k, row, nil); err != nil {
			b.Fatal(err)
		}
	}
}
