package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// errMapFailed is map test's runtime failure: some events did not map (exit code 1).
var errMapFailed = errors.New("mapping failed")

func mapCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Work with sinks' mappings",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("map needs a subcommand: test")}
		},
	}
	cmd.AddCommand(mapTestCmd())
	return cmd
}

// mapTestFlags are the options of `backflow map test`.
type mapTestFlags struct {
	sink, event string
	fromTopic   bool
	n           int
}

func mapTestCmd() *cobra.Command {
	var f mapTestFlags
	cmd := &cobra.Command{
		Use:   "test --sink N (--event FILE | --from-topic [-n N])",
		Short: "Run a sink's filter and mapping on sample events and print what it would write",
		Long: `Run a sink's on_delete, on_truncate, filter and mapping on sample events, exactly as the sink
does before writing, and print one JSON object a line: "op" (upsert, delete or truncate), "key"
and "fields", or "skip" with the reason (filter, on_delete: ignore, on_truncate: ignore). An
update (or re-snapshot read) the filter rejects shows as the delete it becomes (on_filter_out:
delete, the default). Nothing is written: no target is opened, no group joined, no dead-letter topic touched.

--event FILE reads events from a file: one or more JSON Debezium envelopes, one after the other
(e.g. one a line), each {"op": "c"|"r"|"u"|"d"|"t", "before": {…}, "after": {…}, "source":
{"schema": …, "table": …, …}}, or wrapped as Kafka Connect writes it ({"schema": …, "payload":
{…}}). An optional "key" object in an envelope names the key columns and their values, as the
record key would. --from-topic reads the first N records of the sink's topics instead.

An event that fails to map is reported with the file and line of the part of the mapping that
failed (exit code 1); the others are still printed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.sink == "" || (f.event == "") == !f.fromTopic {
				return usageError{fmt.Errorf("map test needs --sink and exactly one of --event or --from-topic")}
			}
			if f.n < 1 {
				return usageError{fmt.Errorf("-n must be at least 1")}
			}
			return runMapTest(cmd, f)
		},
	}
	cmd.Flags().StringVar(&f.sink, "sink", "", "the sink whose mapping to run")
	cmd.Flags().StringVar(&f.event, "event", "", "a file of JSON Debezium envelopes")
	cmd.Flags().BoolVar(&f.fromTopic, "from-topic", false, "take the events from the sink's topics, from their start")
	cmd.Flags().IntVarP(&f.n, "lines", "n", 10, "with --from-topic: how many records to take")
	return cmd
}

func runMapTest(cmd *cobra.Command, f mapTestFlags) error {
	file, err := loadFile(cmd)
	if err != nil {
		return err
	}
	cfg := file.Pipeline
	i := slices.IndexFunc(cfg.Sinks, func(s config.Sink) bool { return s.Name == f.sink })
	if i < 0 {
		return usageError{fmt.Errorf("no sink named %q in the pipeline", f.sink)}
	}
	if f.fromTopic {
		withBrokers(cfg)
	}
	pv, err := sink.NewPreview(cfg, cfg.Sinks[i])
	if err != nil {
		return usageError{locateMappingError(file, fmt.Sprintf("sinks[%d]", i), err)}
	}
	m := &mapTester{ctx: cmd.Context(), pv: pv, file: file, sinkPath: fmt.Sprintf("sinks[%d]", i),
		out: lineEncoder(cmd.OutOrStdout()), errOut: cmd.ErrOrStderr()}
	if f.fromTopic {
		err = m.fromTopics(cfg.Kafka, f.n)
	} else {
		err = m.fromFile(f.event)
	}
	if err != nil {
		return err
	}
	if m.failed > 0 {
		return fmt.Errorf("%w: %d event(s)", errMapFailed, m.failed)
	}
	return nil
}

// mapTester maps sample events and prints the outcome of each.
type mapTester struct {
	ctx      context.Context
	pv       *sink.Preview
	file     *config.File
	sinkPath string
	out      *json.Encoder
	errOut   io.Writer
	failed   int
}

// mapped is one line of map test's output.
type mapped struct {
	Event     int            `json:"event,omitempty"` // the event's place in --event FILE, from 1
	Topic     string         `json:"topic,omitempty"`
	Partition *int32         `json:"partition,omitempty"`
	Offset    *int64         `json:"offset,omitempty"`
	Op        string         `json:"op,omitempty"`
	Key       map[string]any `json:"key,omitempty"`
	Fields    map[string]any `json:"fields,omitempty"`
	Skip      string         `json:"skip,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// fromFile maps every envelope of the file, in order.
func (m *mapTester) fromFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Errorf("read events: %w", err)}
	}
	topic := ""
	if ts := m.pv.Topics(); len(ts) > 0 {
		topic = ts[0] // names the table when an envelope's source does not
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return usageError{fmt.Errorf("%s: event %d: invalid JSON: %w", path, n, err)}
		}
		key, err := envelopeKey(raw)
		if err != nil {
			return usageError{fmt.Errorf("%s: event %d: %w", path, n, err)}
		}
		rec := &kgo.Record{Topic: topic, Key: key, Value: raw, Offset: int64(n - 1)}
		ev, err := m.pv.Decode(m.ctx, rec)
		if err != nil {
			return usageError{fmt.Errorf("%s: event %d: %w", path, n, err)}
		}
		line := mapped{Event: n}
		if err := m.apply(rec, ev, &line); err != nil {
			return err
		}
	}
}

// envelopeKey returns the "key" member of an envelope as a record key; nil when it has none.
func envelopeKey(raw json.RawMessage) ([]byte, error) {
	var env struct {
		Key json.RawMessage `json:"key"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("expected a JSON object: %w", err)
	}
	if len(env.Key) == 0 || string(env.Key) == "null" {
		return nil, nil
	}
	return env.Key, nil
}

// fromTopics maps the first n records of the sink's topics (tombstones are skipped, as the
// sink skips them).
func (m *mapTester) fromTopics(k config.Kafka, n int) error {
	left := n
	var werr error
	each := func(r *kgo.Record) bool {
		ev, err := m.pv.Decode(m.ctx, r)
		if err != nil {
			m.failed++
			fmt.Fprintf(m.errOut, "%s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
		} else if ev != nil {
			line := mapped{Topic: r.Topic, Partition: &r.Partition, Offset: &r.Offset}
			werr = m.apply(r, ev, &line)
		}
		left--
		return werr == nil && left > 0
	}
	spec := readSpec{topics: m.pv.Topics(), from: kgo.NewOffset().AtStart(), untilEnd: true}
	if err := readTopics(m.ctx, k, spec, each); err != nil {
		return err
	}
	return werr
}

// apply maps one decoded event and prints the outcome; a mapping failure is also reported on
// stderr with its place in the pipeline file.
func (m *mapTester) apply(r *kgo.Record, ev *change.Event, line *mapped) error {
	rec, skip, err := m.pv.Map(ev, r.Topic, r.Partition, r.Offset)
	switch {
	case err != nil:
		m.failed++
		located := locateMappingError(m.file, m.sinkPath, err)
		fmt.Fprintln(m.errOut, located)
		line.Error = located.Error()
	case skip != "":
		line.Skip = skip
	default:
		line.Op, line.Key, line.Fields = rec.Op.String(), printable(rec.Key), printable(rec.Fields)
	}
	if err := m.out.Encode(line); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
