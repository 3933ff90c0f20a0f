package kafka

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// snapshotBatch is about a record batch of a snapshot of the bench's table: Avro values with
// the same source block and a few changing fields, keys, varint lengths between them.
func snapshotBatch() []byte { return recordBatch(900_000) }

// recordBatch is snapshotBatch's records, about size bytes of them.
func recordBatch(size int) []byte {
	var b []byte
	for i := 0; len(b) < size; i++ {
		v := fmt.Sprintf("\xc3\x01\x84\x01\xe6\xd0A.\xca \x00\x02%d\x02\x18SKU-%08d\x02%d\x02\b%d.%02d\x0262026-12-06T09:14:38.444242Z,backflow 1.0.0\x14postgresql\x10backflow\x86\xa3\x92\xaa\xc9h\btrue\x10postgres\fpublic\nbench\x00\x02\xe0\xf5\xd45\x02r\x02\x9e\xa3\x92\xaa\xc9h\x00",
			i*2, i, i%500, i%10000/100, i%100)
		b = fmt.Appendf(b, "%c\x00%c%c\xc3\x01\x84\x01\xe6\xd0A.\xca %d", len(v)+16, i%128, 24, i*2)
		b = append(b, v...)
	}
	return b
}

// The batch compressor's frames decode to the batch, and a broker that reads no zstd gets
// another codec.
func TestBatchCompressor(t *testing.T) {
	c, err := BatchCompressor(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	src := snapshotBatch()
	out, codec := c.Compress(new(bytes.Buffer), src)
	if codec != kgo.CodecZstd || len(out) >= len(src)/4 {
		t.Fatalf("compressed %d bytes to %d with codec %d, want zstd and less than a quarter", len(src), len(out), codec)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxWindow(zstdWindow))
	if err != nil {
		t.Fatal(err)
	}
	back, err := dec.DecodeAll(out, nil)
	if err != nil || !bytes.Equal(back, src) {
		t.Fatalf("decoded %d bytes (error %v), want the %d compressed", len(back), err, len(src))
	}
	if _, codec := c.Compress(new(bytes.Buffer), src, kgo.CompressDisableZstd); codec != kgo.CodecLz4 {
		t.Errorf("without zstd: codec %d, want lz4 (%d)", codec, kgo.CodecLz4)
	}
}

// go test ./pkg/kafka -run '^$' -bench Compress: franz-go's compressor at the same level and
// the batch compressor, on the same batch (MB/s and compressed bytes per batch).
func BenchmarkCompress(b *testing.B) {
	franz, _ := kgo.DefaultCompressor(kgo.ZstdCompression().WithLevel(int(zstd.SpeedFastest)))
	ours, _ := BatchCompressor(zstd.SpeedFastest)
	for _, size := range []int{2_000, 16_000, 900_000} {
		src := recordBatch(size)
		for name, c := range map[string]kgo.Compressor{"franz-go": franz, "batch": ours} {
			b.Run(fmt.Sprintf("%s/%dB", name, size), func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				var dst bytes.Buffer
				var n int
				for b.Loop() {
					dst.Reset()
					out, _ := c.Compress(&dst, src)
					n = len(out)
				}
				b.ReportMetric(float64(n), "out_bytes")
			})
		}
	}
}
