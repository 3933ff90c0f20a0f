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
	// DLQHeaderLostKind, on such a dead letter, says what of the records is gone:
	// DLQLostDeletes for records the sink resumed before that are older than their compacted
	// topic's delete.retention.ms (the deletes among them may be gone, see kafka.DeleteHorizons);
	// without it, the records themselves.
	DLQHeaderLostKind = "backflow.lost.kind"
	DLQLostDeletes    = "deletes"
)

// ResetCommitMetadata is the metadata of the offsets replay --reset commits for a sink's group:
// a position an operator chose, not one where the sink stopped applying (a sink's own commits
// carry its member ID).
const ResetCommitMetadata = "backflow.replay.reset"
