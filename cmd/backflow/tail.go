package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// tailFlags are the options of `backflow tail`.
type tailFlags struct {
	table, topic, from, key string
	n                       int
}

func tailCmd() *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail (--table schema.table | --topic T) [--from earliest|latest|<offset>|<RFC3339 time>] [--key K] [-n N]",
		Short: "Print a topic's events as JSON lines, decoded as sinks decode them",
		Long: `Print the events of a change topic, one JSON object a line: the Debezium-style envelope
(op, before, after, source, ts_ms) with plain values, the decoded key, and topic, partition and
offset; a tombstone prints "tombstone": true. Avro schemas are read as sinks read them (the
schema topics of the pipeline's sinks, the schema registry). A topic that a sink reads with
envelope: none is read as bare rows, as that sink reads it. No consumer group is joined and
nothing is written. Without -n it follows the topic until interrupted.

--key filters on the record key: "--key 42" for a key of one column, "--key sku=A-1,wh=ams" for
named key columns (every one named must match). Values compare as their JSON text, without
quotes for strings.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return runTail(cmd, f) },
	}
	cmd.Flags().StringVar(&f.table, "table", "", "the captured table whose topic to read (schema.table)")
	cmd.Flags().StringVar(&f.topic, "topic", "", "the topic to read")
	cmd.Flags().StringVar(&f.from, "from", "latest", "where to start: earliest, latest, an offset (in every partition) or an RFC 3339 time")
	cmd.Flags().StringVar(&f.key, "key", "", `print only events of this key: a value, or col=value,… for named key columns`)
	cmd.Flags().IntVarP(&f.n, "lines", "n", 0, "stop after printing N events (0: follow until interrupted)")
	return cmd
}

func runTail(cmd *cobra.Command, f tailFlags) error {
	if (f.table == "") == (f.topic == "") {
		return usageError{fmt.Errorf("tail needs exactly one of --table or --topic")}
	}
	if f.n < 0 {
		return usageError{fmt.Errorf("-n must not be negative")}
	}
	start, err := parseStart(f.from)
	if err != nil {
		return usageError{err}
	}
	match, err := parseKeyFilter(f.key)
	if err != nil {
		return usageError{err}
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	topic := f.topic
	if f.table != "" {
		topic = cfg.TopicFor(f.table)
	}
	withBrokers(cfg)
	var opts []sink.ReaderOpt
	if readsRows(cfg, topic) {
		opts = append(opts, sink.AsRows())
	}
	rd, err := sink.NewReader(cfg.Kafka, allSchemaTopics(cfg), opts...)
	if err != nil {
		return usageError{err}
	}
	t := &tailer{ctx: cmd.Context(), rd: rd, match: match, left: f.n, out: lineEncoder(cmd.OutOrStdout()), errOut: cmd.ErrOrStderr()}
	if err := readTopics(cmd.Context(), cfg.Kafka, readSpec{topics: []string{topic}, from: start}, t.print); err != nil {
		return err
	}
	return t.err
}

// allSchemaTopics lists the pipeline's own schema topic and every sink's schema_topics: tail
// may read any topic, so it knows every schema the sinks know.
func allSchemaTopics(cfg *config.Pipeline) []string {
	out := []string{cfg.Kafka.OwnSchemaTopic()}
	for _, s := range cfg.Sinks {
		for _, t := range cfg.Kafka.SchemaTopics(s) {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// readsRows reports whether a sink of the pipeline reads topic as bare rows (envelope: none).
func readsRows(cfg *config.Pipeline, topic string) bool {
	for _, s := range cfg.Sinks {
		if s.Envelope == config.EnvelopeNone && slices.Contains(s.Topics, topic) {
			return true
		}
	}
	return false
}

// tailer prints the records readTopics hands it.
type tailer struct {
	ctx    context.Context
	rd     *sink.Reader
	match  keyFilter
	left   int // events still to print; 0 without -n
	out    *json.Encoder
	errOut io.Writer
	err    error
}

// print prints one record when its key matches; false stops reading (-n reached, or output failed).
func (t *tailer) print(r *kgo.Record) bool {
	key, err := t.rd.DecodeKey(t.ctx, r.Topic, r.Key)
	if err != nil {
		fmt.Fprintf(t.errOut, "%s/%d@%d: key: %v\n", r.Topic, r.Partition, r.Offset, err)
		return true
	}
	if !t.match.matches(key) {
		return true
	}
	ev, err := t.rd.Decode(t.ctx, r)
	if err != nil {
		fmt.Fprintf(t.errOut, "%s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
		return true
	}
	if err := t.out.Encode(newEnvelope(r, key, ev)); err != nil {
		t.err = fmt.Errorf("write event: %w", err)
		return false
	}
	if t.left > 0 {
		t.left--
		return t.left > 0
	}
	return true
}

// keyFilter is a parsed --key: a whole value (one-column keys) or values by column.
type keyFilter struct {
	value   string
	columns map[string]string
	set     bool
}

func parseKeyFilter(s string) (keyFilter, error) {
	if s == "" {
		return keyFilter{}, nil
	}
	if !strings.Contains(s, "=") {
		return keyFilter{value: s, set: true}, nil
	}
	f := keyFilter{columns: map[string]string{}, set: true}
	for _, part := range strings.Split(s, ",") {
		col, val, ok := strings.Cut(part, "=")
		if !ok || col == "" {
			return keyFilter{}, fmt.Errorf("invalid --key %q: expected a value, or col=value,… with a column name in every part", s)
		}
		f.columns[col] = val
	}
	return f, nil
}

func (f keyFilter) matches(key map[string]any) bool {
	switch {
	case !f.set:
		return true
	case f.columns == nil:
		if len(key) != 1 {
			return false
		}
		for _, v := range key {
			return keyText(v) == f.value
		}
	}
	for col, want := range f.columns {
		v, ok := key[col]
		if !ok || keyText(v) != want {
			return false
		}
	}
	return true
}

// keyText is a key value as --key compares it: its JSON text, strings without their quotes.
func keyText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.Trim(string(b), `"`)
}
