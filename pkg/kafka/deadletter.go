package kafka

// Headers of a sink's dead letters (written by pkg/sink), named here so that what reads them
// back (status, re-drives) spells them the same.
const (
	DLQHeaderReason    = "backflow.reason"    // why the record could not be applied
	DLQHeaderSink      = "backflow.sink"      // the sink that rejected it
	DLQHeaderTopic     = "backflow.topic"     // original topic
	DLQHeaderPartition = "backflow.partition" // original partition
	DLQHeaderOffset    = "backflow.offset"    // original offset
	DLQHeaderTime      = "backflow.time"      // when it was dead-lettered, RFC 3339
	// DLQHeaderLostTo marks a dead letter that stands for records Kafka deleted before the sink
	// applied them: the original offsets from DLQHeaderOffset to this one, exclusive. It has no
	// key and no value: the records are gone.
	DLQHeaderLostTo = "backflow.lost.to"
)
