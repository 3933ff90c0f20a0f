package codec

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestClaimedSizesAreBounded: sizes read from a message (string lengths, block counts, decimal
// scales, nesting) cost no more than the bytes that are there. Each message here is a few dozen
// bytes; before the bounds each allocated hundreds of MiB or gigabytes, or looped 2^62 times.
func TestClaimedSizesAreBounded(t *testing.T) {
	ctx := context.Background()
	store := NewSchemaStore()
	fp, err := store.Add([]byte(foreignAvroValue))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := NewDecoder(Schemas(store))
	// foreignMsg is a created row of foreignAvroValue: before null, after {id 1, price: vsd,
	// nine NULL columns}, source {"", 0, extra, empties, kind a, txId null}, op c, ts_ms null,
	// chain.
	foreignMsg := func(vsd, extra, empties, chain []byte) []byte {
		b := []byte{0x00, 0x02, 0x02}
		b = append(append(b, 0x02), vsd...)
		b = append(b, make([]byte, 9)...)
		b = append(append(append(b, 0x00, 0x00), extra...), empties...)
		b = append(b, 0x00, 0x00, 0x00, 0x00)
		return singleObject(fp, append(b, chain...))
	}
	okVSD, okExtra, okEmpties, okChain := []byte{0x06, 0x02, 0x05}, []byte{0x02, 0x02, 'k', 0x02, 0x01, 0x02, 0x00, 0x00}, []byte{0x04, 0x00}, []byte{0x02, 0x00}
	if ev, err := dec.Decode(ctx, "t", nil, foreignMsg(okVSD, okExtra, okEmpties, okChain)); err != nil || ev.After["price"] != "0.005" {
		t.Fatalf("the well-formed message: %v, %v", err, ev)
	}

	p := newPair(t, "avro")
	created := testEvents(scalarKinds())["insert nulls"]
	created.After = withoutArrays(created.After)
	_, v, err := p.enc.Encode(ctx, fuzzTopic, created)
	if err != nil {
		t.Fatal(err)
	}
	regionAt := soeHeaderLen + 3 // after before (null), after (present) and id (42)

	huge := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01} // 2^62, zigzag
	for _, tc := range []struct {
		name  string
		dec   *Decoder
		value []byte
		want  string
	}{
		{"a 256 MiB string", p.dec, append(v[:regionAt:regionAt], 0x80, 0x80, 0x80, 0x80, 0x02), "MaxByteSliceSize"},
		{"a 1025-byte string in 20 bytes", p.dec, append(v[:regionAt:regionAt], 0x82, 0x10), "MaxByteSliceSize"},
		{"a variable scale of 2^31-1", dec, foreignMsg([]byte{0xFE, 0xFF, 0xFF, 0xFF, 0x0F, 0x02, 0x05}, okExtra, okEmpties, okChain), "scale 2147483647 is out of range"},
		{"a variable scale of -2^31", dec, foreignMsg([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x02, 0x05}, okExtra, okEmpties, okChain), "scale -2147483648 is out of range"},
		{"2^62 empty records", dec, foreignMsg(okVSD, okExtra, append(huge, 0x00), okChain), ""},
		{"2^62 map entries", dec, foreignMsg(okVSD, huge, okEmpties, okChain), "EOF"},
		{"a chain 100 links long", dec, foreignMsg(okVSD, okExtra, okEmpties, append(bytes.Repeat([]byte{0x02}, 100), 0x00)), "nested deeper than 64"},
		{"a Decimal scale of 1e9", dec, []byte(`{"schema":{"type":"struct","fields":[{"field":"after","type":"struct","fields":[` +
			`{"field":"n","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"1000000000"}}]}]},` +
			`"payload":{"op":"c","after":{"n":"AQ=="}}}`), "scale 1000000000 is out of range"},
		{"a VariableScaleDecimal scale of 2^40 in JSON", dec, []byte(`{"schema":{"type":"struct","fields":[{"field":"after","type":"struct","fields":[` +
			`{"field":"n","type":"struct","name":"io.debezium.data.VariableScaleDecimal"}]}]},` +
			`"payload":{"op":"c","after":{"n":{"scale":1099511627776,"value":"AQ=="}}}}`), "scale 1099511627776 is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := tc.dec.Decode(ctx, "wh.public.t", nil, tc.value)
			if st := tc.dec.ScanTable(ctx, tc.value); st != nil {
				if _, ok := tc.dec.ScanCreated(ctx, tc.value, st, &rowRecorder{t: st, row: change.Row{}}); ok {
					t.Error("ScanCreated accepted the message")
				}
			}
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
				t.Errorf("decoding %d bytes allocated %d MiB", len(tc.value), n>>20)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Decode: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Decode gave error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
