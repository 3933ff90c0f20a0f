package kafka

import (
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer tuning used by ProducerOpts.
const (
	// ProducerLinger is how long a partition waits for more records before sending a batch.
	ProducerLinger = 5 * time.Millisecond
	// ProducerBatchMaxBytes caps one record batch before compression (Kafka's message.max.bytes
	// default is slightly larger).
	ProducerBatchMaxBytes = 1_000_000
	// ProducerMaxBufferedRecords bounds records buffered in the client; callers apply their own,
	// smaller in-flight limit for backpressure.
	ProducerMaxBufferedRecords = 1_000_000
	// ProducerMaxBufferedBytes bounds the bytes buffered in the client.
	ProducerMaxBufferedBytes = 256 << 20
)

// ProducerOpts returns the producer options backflow uses everywhere: acks from all in-sync
// replicas, idempotent writes (franz-go's default, kept), Kafka Java's default keyed partitioning
// (murmur2, so other clients put a key in the same partition), a short linger, lz4 compression
// (snappy as a fallback) and unlimited retries: a record is never dropped for having failed often.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(ProducerLinger),
		kgo.ProducerBatchMaxBytes(ProducerBatchMaxBytes),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.SnappyCompression(), kgo.NoCompression()),
		kgo.RecordRetries(math.MaxInt),
		kgo.MaxBufferedRecords(ProducerMaxBufferedRecords),
		kgo.MaxBufferedBytes(ProducerMaxBufferedBytes),
	}
}
