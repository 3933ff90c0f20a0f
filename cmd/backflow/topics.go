package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// withBrokers points a pipeline without kafka.brokers at the embedded broker of a `backflow
// run` on this machine, as the commands that look at a running pipeline do.
func withBrokers(cfg *config.Pipeline) {
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Kafka.EmbeddedPort))}
	}
}

// parseStart reads a --from of tail and map test: earliest, latest, an offset (in every
// partition) or an RFC 3339 time (the first record at or after it in each partition).
func parseStart(s string) (kgo.Offset, error) {
	switch s {
	case "earliest":
		return kgo.NewOffset().AtStart(), nil
	case "latest":
		return kgo.NewOffset().AtEnd(), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return kgo.NewOffset().At(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return kgo.NewOffset().AfterMilli(t.UnixMilli()), nil
	}
	return kgo.Offset{}, fmt.Errorf("invalid --from %q: expected earliest, latest, an offset or an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
}

// readSpec says what readTopics reads.
type readSpec struct {
	topics   []string
	from     kgo.Offset
	untilEnd bool // stop at the ends the topics had when reading started, instead of following them
}

// readTopics reads the topics without a consumer group (nothing is committed, no group is
// joined: looking at a topic never moves a sink) and calls each for every record until it
// returns false, ctx ends, or (untilEnd) the records there were at the start are read.
func readTopics(ctx context.Context, k config.Kafka, spec readSpec, each func(*kgo.Record) bool) error {
	opts, err := kafka.ClientOpts(k, nil)
	if err != nil {
		return usageError{err}
	}
	opts = append(opts, kafka.CommittedReadOpts()...) // what sinks read: committed transactions only
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(spec.topics...), kgo.ConsumeResetOffset(spec.from))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	left, err := pendingEnds(ctx, kadm.NewClient(cl), spec.topics)
	if err != nil {
		return err
	}
	for !spec.untilEnd || len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fatalFetchError(fs); err != nil {
			return err
		}
		stop := false
		fs.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			tp := topicPartition{r.Topic, r.Partition}
			if end, ok := left[tp]; ok && r.Offset+1 >= end {
				delete(left, tp)
			}
			if !r.Attrs.IsControl() { // a transaction's marker only moves the partition on
				stop = !each(r)
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

type topicPartition struct {
	topic     string
	partition int32
}

// pendingEnds lists the end offset of every non-empty partition of topics, and fails for a
// topic that does not exist (a consumer would wait for it without a word).
func pendingEnds(ctx context.Context, adm *kadm.Client, topics []string) (map[topicPartition]int64, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topics...) // not the open transactions' records
	if err != nil {
		return nil, fmt.Errorf("list offsets of %v: %w", topics, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %v: %w", topics, err)
	}
	left := map[topicPartition]int64{}
	var missing error
	ends.Each(func(o kadm.ListedOffset) {
		if errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			missing = fmt.Errorf("topic %s does not exist", o.Topic)
			return
		}
		if s, ok := starts.Lookup(o.Topic, o.Partition); o.Err == nil && ok && o.Offset > s.Offset {
			left[topicPartition{o.Topic, o.Partition}] = o.Offset
		}
	})
	for _, t := range topics {
		if _, ok := ends[t]; !ok && missing == nil {
			missing = fmt.Errorf("topic %s does not exist", t)
		}
	}
	return left, missing
}

// fatalFetchError returns the first fetch error the client does not retry itself.
func fatalFetchError(fs kgo.Fetches) error {
	var out error
	fs.EachError(func(t string, p int32, err error) {
		if out == nil && !kerr.IsRetriable(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			out = fmt.Errorf("fetch %s/%d: %w", t, p, err)
		}
	})
	return out
}

// envelope is an event as tail prints it: the Debezium-style envelope of the value, plain values
// (as mappings see them), and where the record is.
type envelope struct {
	Topic          string         `json:"topic"`
	Partition      int32          `json:"partition"`
	Offset         int64          `json:"offset"`
	Key            map[string]any `json:"key"`
	Op             string         `json:"op,omitempty"`
	Before         map[string]any `json:"before"`
	After          map[string]any `json:"after"`
	Source         map[string]any `json:"source,omitempty"`
	TsMs           int64          `json:"ts_ms,omitempty"`
	UnchangedToast []string       `json:"unchanged_toast,omitempty"`
	Tombstone      bool           `json:"tombstone,omitempty"`
}

// newEnvelope renders a decoded record; ev is nil for a tombstone.
func newEnvelope(r *kgo.Record, key map[string]any, ev *change.Event) envelope {
	out := envelope{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: key, Tombstone: ev == nil}
	if ev == nil {
		return out
	}
	out.Op, out.TsMs, out.UnchangedToast = string(ev.Op), ev.TsMs, ev.UnchangedToast
	out.Before, out.After = printable(mapping.Values(ev.Table, ev.Before)), printable(mapping.Values(ev.Table, ev.After))
	s := ev.Source
	out.Source = map[string]any{"connector": s.Connector, "name": s.Name, "db": s.DB, "schema": s.Schema,
		"table": s.Table, "txId": s.TxID, "lsn": s.LSN, "ts_ms": s.TsMs, "snapshot": s.Snapshot}
	return out
}

// printable spells, in place, the values of a row (in arrays too) that encoding/json refuses to
// print, which would stop tail at the row: the float NaN and infinities as the strings the JSON
// form of events uses (codec.NonFiniteJSON), PostgreSQL's infinite dates and timestamps as it
// spells them (sink.Infinity), and times outside years 0 to 9999 (BC dates) in RFC 3339 all the
// same.
func printable(row map[string]any) map[string]any {
	for k, v := range row {
		row[k] = printableValue(v)
	}
	return row
}

func printableValue(v any) any {
	switch x := v.(type) {
	case float64:
		return floatWord(x, v)
	case float32:
		return floatWord(float64(x), v)
	case time.Time:
		if inf, ok := sink.Infinity(x); ok {
			return inf
		}
		if y := x.Year(); y < 0 || y > 9999 {
			return x.Format(time.RFC3339Nano)
		}
	case []any:
		for i, e := range x {
			x[i] = printableValue(e)
		}
	case map[string]any:
		return printable(x)
	}
	return v
}

func floatWord(f float64, v any) any {
	if word, ok := codec.NonFiniteJSON(f); ok {
		return word
	}
	return v
}

// lineEncoder writes one JSON value per line, as tail and map test print: text as it is (no
// \u003c for <), since the output is read by people and line-oriented tools, not embedded in HTML.
func lineEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
