package kafka

import (
	"math"
	"time"

	"github.com/klauspost/compress/zstd"
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
	// MaxRecordBytes is the largest record OversizeProducerOpts lets through to the broker: a
	// produce request must stay under Kafka's socket.request.max.bytes (100 MiB by default, and
	// franz-go's own cap on a request), which a larger record cannot, compressed or not.
	MaxRecordBytes = 99 << 20
	// BatchOverhead is what a record batch adds around its records (the v2 batch header and the
	// log entry's offset and length), which Kafka counts against max.message.bytes.
	BatchOverhead = 61 + 12
)

// ProducerOpts returns the producer options backflow uses everywhere: acks from all in-sync
// replicas, idempotent writes (franz-go's default, kept), Kafka Java's default keyed partitioning
// (murmur2, so other clients put a key in the same partition) except for records marked with
// WithExplicitPartition (a truncate's copies, see ExplicitPartitioner), a short linger, and
// unlimited retries: a record is never dropped for having failed often.
//
// Batches are compressed with zstd at its fastest level (BatchCompressor): a better ratio than
// lz4 for wide rows, which then fit Kafka's size limits, where zstd's default level costs capture
// ~10 % of its throughput. zstd is about a quarter of capture's CPU during a snapshot; lz4 made
// the snapshot bench about 4 % faster, for about three times the bytes on a snapshot's batches
// (see the README, "Benchmarks"): not worth what Kafka then stores and sends. lz4 and snappy
// remain for brokers before 2.1.
func ProducerOpts() []kgo.Opt {
	fastest, _ := BatchCompressor(zstd.SpeedFastest) // fails only for a level it does not know
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		WatchPartitions(nil),
		kgo.ProducerLinger(ProducerLinger),
		kgo.ProducerBatchMaxBytes(ProducerBatchMaxBytes),
		kgo.WithCompressor(fastest),
		kgo.RecordRetries(math.MaxInt),
		kgo.MaxBufferedRecords(ProducerMaxBufferedRecords),
		kgo.MaxBufferedBytes(ProducerMaxBufferedBytes),
	}
}

// WatchPartitions is ProducerOpts' partitioner, which calls grew (when not nil) as a topic's
// keyed records start being spread over more partitions than before (see PartitionsGrew):
// append it after ProducerOpts. Kafka moves a key to another partition then, and nothing else
// tells: a consumer behind on the key's old partition can apply its older records after newer
// ones.
func WatchPartitions(grew PartitionsGrew) kgo.Opt {
	return kgo.RecordPartitioner(explicitPartitioner{inner: kgo.StickyKeyPartitioner(nil), grew: grew})
}

// OversizeProducerOpts are ProducerOpts for a producer of records larger than their topic's
// max.message.bytes, one at a time: it sends records of up to MaxRecordBytes, so that the broker,
// not the client, judges their compressed size. These few records get zstd's default level
// through a compressor of their own (franz-go ignores ProducerBatchCompression once a compressor
// is set, as ProducerOpts does): it compresses much better than the fastest level of the
// regular producer, which leaves text without repeats as it is (random decimal digits: about
// half their size at the default level, all of it at the fastest; TestMessageSizeLimit).
func OversizeProducerOpts() []kgo.Opt {
	dflt, _ := BatchCompressor(zstd.SpeedDefault) // fails only for a level it does not know
	return append(ProducerOpts(), kgo.ProducerBatchMaxBytes(MaxRecordBytes), kgo.ProducerLinger(0), kgo.WithCompressor(dflt))
}

// BatchLimit makes a producer build batches of at most limit(topic) bytes before compression:
// with a topic's max.message.bytes, no batch of small records can exceed what the topic takes,
// whatever the compression ratio. Append it after ProducerOpts. franz-go asks once per
// partition; a record larger than the limit fails in the client with kerr.MessageTooLarge.
func BatchLimit(limit func(topic string) int32) kgo.Opt {
	return kgo.ProducerBatchMaxBytesFn(limit)
}
