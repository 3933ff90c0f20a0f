package capture

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// This file is what other publishers of change events (warehouse models) share with capture, so
// that their events have the same column kinds, value forms and encoding as captured tables and
// sinks need no change.

// SessionParams returns the session settings that fix PostgreSQL's text output; a connection
// whose text values go through a TextDecoder must use them.
func SessionParams() map[string]string { return maps.Clone(sessionParams) }

// TypeMapper maps PostgreSQL types to change kinds as capture does (domains, enums, arrays),
// looking them up over conn and caching them.
type TypeMapper struct{ cat *catalog }

// NewTypeMapper returns a TypeMapper querying conn.
func NewTypeMapper(conn *pgx.Conn) *TypeMapper { return &TypeMapper{cat: newCatalog(conn, nil)} }

// Column describes a column named name of type oid.
func (m *TypeMapper) Column(ctx context.Context, name string, oid uint32, key bool) (change.Column, error) {
	return m.cat.column(ctx, name, oid, key)
}

// TextDecoder turns a column's text output (TextExpr, under SessionParams) into its change form.
type TextDecoder struct{ d *decoder }

// NewTextDecoder returns a TextDecoder.
func NewTextDecoder() *TextDecoder { return &TextDecoder{d: newDecoder()} }

// Decode converts the text of a column of col's type.
func (d *TextDecoder) Decode(col change.Column, text []byte) (any, error) {
	return d.d.decode(col, text)
}

// TextExpr is the SQL that reads expr, a value of col's type, as the text TextDecoder takes: the
// type's output function (bpchar::text would trim its padding).
func TextExpr(expr string, col change.Column) string {
	if col.PGType == "bpchar" {
		return fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE concat(%s) END", expr, expr)
	}
	return expr + "::text"
}

// NewEncoder returns the encoder of the pipeline's format, as capture uses it: with the
// configured schema registry, else publishing Avro schemas to "<prefix>._schemas" through client
// after ensure(ctx, topic) has made sure that compacted topic exists.
func NewEncoder(cfg *config.Pipeline, client *kgo.Client, ensure func(ctx context.Context, topic string) error) (*codec.Encoder, error) {
	prefix := cfg.Kafka.TopicPrefix
	opts := []codec.EncoderOpt{codec.Format(cfg.Kafka.Format), codec.TopicPrefix(prefix)}
	if url := cfg.Kafka.Registry.URL; url != "" {
		rc, err := sr.NewClient(registryOpts(cfg.Kafka.Registry)...)
		if err != nil {
			return nil, fmt.Errorf("kafka.schema_registry: %w", err)
		}
		opts = append(opts, codec.Registry(rc))
	} else {
		schemas := cfg.Kafka.OwnSchemaTopic()
		opts = append(opts, codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
			if err := ensure(ctx, schemas); err != nil {
				return err
			}
			rec := &kgo.Record{Topic: schemas, Key: codec.FingerprintKey(fp), Value: schema}
			if err := client.ProduceSync(ctx, rec).FirstErr(); err != nil {
				return fmt.Errorf("publish schema %016x to %s: %w", fp, schemas, err)
			}
			return nil
		}))
	}
	enc, err := codec.NewEncoder(opts...)
	if err != nil {
		return nil, fmt.Errorf("encoder: %w", err)
	}
	return enc, nil
}

// WithCommitHook calls fn, on capture's replication goroutine, with the captured tables
// ("schema.table") a transaction changed, once capture has read the transaction's commit (it is
// committed in PostgreSQL then). fn must return at once: models use it to schedule a refresh.
func WithCommitHook(fn func(tables []string)) Opt { return func(c *Capture) { c.onCommit = fn } }

// touch notes that the current transaction changed t.
func (s *stream) touch(t *change.Table) {
	if s.c.onCommit == nil {
		return
	}
	if s.touched == nil {
		s.touched = map[string]bool{}
	}
	s.touched[t.QualifiedName()] = true
}

// committed hands the tables the transaction changed to the commit hook.
func (s *stream) committed() {
	if len(s.touched) == 0 {
		return
	}
	tables := make([]string, 0, len(s.touched))
	for t := range s.touched {
		tables = append(tables, t)
	}
	clear(s.touched)
	s.c.onCommit(tables)
}
