package codec

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/change"
)

// EncoderOpt configures an Encoder.
type EncoderOpt interface{ applyEncoder(*encoderCfg) }

type encoderOpt struct{ fn func(*encoderCfg) }

func (o encoderOpt) applyEncoder(c *encoderCfg) { o.fn(c) }

type encoderCfg struct {
	format    string
	prefix    string
	registry  *sr.Client
	publisher func(ctx context.Context, fingerprint uint64, schema []byte) error
	setReg    bool
}

// Format sets the encoding: FormatAvro ("avro", the default), FormatJSON ("json") or
// FormatDebeziumJSON ("debezium-json"). The empty string means the default.
func Format(f string) EncoderOpt {
	return encoderOpt{func(c *encoderCfg) { c.format = f }}
}

// TopicPrefix sets the topic prefix (default "backflow"). It is the root of the Avro namespace
// of every derived schema ("<prefix>.<schema>.<table>") and is written to source.name.
func TopicPrefix(p string) EncoderOpt {
	return encoderOpt{func(c *encoderCfg) { c.prefix = p }}
}

// Registry makes Avro use a Confluent Schema Registry and its wire format: magic byte 0, the 4-byte
// big-endian schema id, then the Avro body. Schemas are registered under TopicNameStrategy subjects,
// "<topic>-key" and "<topic>-value", once per schema and topic; the ids are cached.
func Registry(cl *sr.Client) EncoderOpt {
	return encoderOpt{func(c *encoderCfg) { c.registry, c.setReg = cl, true }}
}

// SchemaPublisher sets the function that makes Avro schemas known when no registry is used. It is
// called synchronously, before Encode or EncodeKey returns, the first time each schema (key or
// value) is used, with the schema's fingerprint and full JSON; the caller writes it to the compacted
// "<prefix>._schemas" topic (key FingerprintKey(fingerprint), value schema) so that decoders can
// find it. If it fails, the Encode call fails and the next one that needs the schema calls it again.
// "Each schema" means each distinct schema JSON: two schemas that differ only in properties share a
// fingerprint and are both published, the later replacing the earlier under the same key.
func SchemaPublisher(fn func(ctx context.Context, fingerprint uint64, schema []byte) error) EncoderOpt {
	return encoderOpt{func(c *encoderCfg) { c.publisher = fn }}
}

// Encoder turns change events into Kafka record keys and values. It is safe for concurrent use.
type Encoder struct {
	cfg encoderCfg

	plans sync.Map // *change.Table -> *tablePlan

	mu      sync.Mutex
	schemas map[string]*schemaEntry // full schema JSON -> entry, shared by equal table shapes
}

// tablePlan is everything derived once from a *change.Table.
type tablePlan struct {
	table   *change.Table
	cols    []colPlan    // all columns, table order
	keyCols []colPlan    // key columns, table order
	value   *schemaEntry // Avro only
	key     *schemaEntry // Avro only; nil when the table has no key columns
}

// schemaEntry is one distinct Avro schema and what writing it needs.
type schemaEntry struct {
	schema avro.Schema
	json   []byte
	fp     uint64
	soe    [soeHeaderLen]byte

	published atomic.Bool
	pubMu     sync.Mutex

	ids   sync.Map // topic -> uint32 registry id (subject "<topic>-key" or "-value" per entry)
	regMu sync.Mutex
}

// NewEncoder returns an Encoder configured by opts.
func NewEncoder(opts ...EncoderOpt) (*Encoder, error) {
	cfg := encoderCfg{format: FormatAvro, prefix: "backflow"}
	for _, o := range opts {
		o.applyEncoder(&cfg)
	}
	switch cfg.format {
	case "":
		cfg.format = FormatAvro
	case FormatAvro, FormatAvroConfluent, FormatJSON, FormatDebeziumJSON:
	default:
		return nil, fmt.Errorf("codec: unknown format %q (want %q, %q, %q or %q)", cfg.format, FormatAvro, FormatAvroConfluent, FormatJSON, FormatDebeziumJSON)
	}
	if cfg.prefix == "" {
		return nil, errors.New("codec: empty topic prefix")
	}
	if cfg.setReg && cfg.registry == nil {
		return nil, errors.New("codec: Registry given a nil *sr.Client")
	}
	if cfg.registry != nil && cfg.format != FormatAvro {
		return nil, fmt.Errorf("codec: a schema registry needs format %q, not %q", FormatAvro, cfg.format)
	}
	if cfg.registry != nil && cfg.publisher != nil {
		return nil, errors.New("codec: Registry and SchemaPublisher exclude each other: with a registry, schemas are registered there")
	}
	return &Encoder{cfg: cfg, schemas: make(map[string]*schemaEntry)}, nil
}

// Format returns the encoder's format: FormatAvro, FormatAvroConfluent, FormatJSON or
// FormatDebeziumJSON.
func (e *Encoder) Format() string { return e.cfg.format }

// isAvro reports whether the encoder writes Avro bodies (in either framing).
func (e *Encoder) isAvro() bool {
	return e.cfg.format == FormatAvro || e.cfg.format == FormatAvroConfluent
}

// Encode returns the record key and value of ev for topic. The key is nil for truncate events and
// for tables without key columns. Encode checks every value against its column's kind and fails,
// naming the column, on a value of the wrong Go type, a NULL key column or a column the table does
// not have.
func (e *Encoder) Encode(ctx context.Context, topic string, ev *change.Event) (key, value []byte, err error) {
	var buf valueBuf
	defer buf.release()
	key, t, err := e.encode(ctx, topic, ev, &buf)
	if err != nil {
		return nil, nil, err
	}
	if value, err = e.Fill(t, CommitOf(ev)); err != nil {
		return nil, nil, err // the encoder's own offsets: cannot happen
	}
	return key, value, nil
}

// EncodeTemplate is Encode leaving out of the value the fields ev's transaction gets at its
// commit (Commit): they are ignored in ev, and Fill writes them later. Fill of the template with
// CommitOf(ev) is what Encode returns, byte for byte.
func (e *Encoder) EncodeTemplate(ctx context.Context, topic string, ev *change.Event) (key []byte, t Template, err error) {
	var buf valueBuf
	defer buf.release()
	if key, t, err = e.encode(ctx, topic, ev, &buf); err != nil {
		return nil, Template{}, err
	}
	t.Value = detach(t.Value)
	return key, t, nil
}

// valueBuf is the pooled buffer a value template is written to.
type valueBuf struct {
	w  *avro.Writer
	bp *[]byte
}

func (b *valueBuf) release() {
	if b.w != nil {
		putWriter(b.w)
	}
	if b.bp != nil && cap(*b.bp) <= maxPooledBuf {
		jsonBufPool.Put(b.bp)
	}
}

// encode returns ev's key and value template, the template's bytes in buf.
func (e *Encoder) encode(ctx context.Context, topic string, ev *change.Event, buf *valueBuf) (key []byte, t Template, err error) {
	if ev == nil {
		return nil, t, fmt.Errorf("codec: encode for topic %q: nil event", topic)
	}
	if ev.Table == nil {
		return nil, t, fmt.Errorf("codec: encode %q event for topic %q: nil Table", ev.Op, topic)
	}
	p, err := e.plan(ev.Table)
	if err != nil {
		return nil, t, err
	}
	wrap := func(err error) error {
		return fmt.Errorf("codec: encode %s event (op %q) for topic %q: %w", ev.Table.QualifiedName(), ev.Op, topic, err)
	}
	var keyRow change.Row
	switch ev.Op {
	case change.OpRead, change.OpCreate, change.OpUpdate:
		if ev.After == nil {
			return nil, t, wrap(errors.New("no after row"))
		}
		keyRow = ev.After
	case change.OpDelete:
		if ev.Before == nil {
			return nil, t, wrap(errors.New("no before row"))
		}
		keyRow = ev.Before
	case change.OpTruncate:
	default:
		return nil, t, wrap(errors.New("unknown op"))
	}

	if !e.isAvro() {
		if keyRow != nil && len(p.keyCols) > 0 {
			if key, err = e.encodeJSONKey(p, keyRow); err != nil {
				return nil, t, wrap(err)
			}
		}
		buf.bp = jsonBufPool.Get().(*[]byte)
		if e.cfg.format == FormatDebeziumJSON {
			t.Value, err = appendConnectEnvelope((*buf.bp)[:0], p, ev, e.cfg.prefix, &t.Cuts)
		} else {
			t.Value, err = appendJSONEnvelope((*buf.bp)[:0], p, ev, e.cfg.prefix, &t.Cuts)
		}
		*buf.bp = t.Value[:0] // keep the grown buffer
		if err != nil {
			return nil, Template{}, wrap(err)
		}
		return key, t, nil
	}

	if keyRow != nil && p.key != nil {
		if key, err = e.encodeAvroKey(ctx, topic, p, keyRow); err != nil {
			return nil, t, wrap(err)
		}
	}
	buf.w = getWriter()
	if err := e.writeHeader(ctx, buf.w, topic, p.value, "-value"); err != nil {
		return nil, t, wrap(err)
	}
	if err := writeEnvelope(buf.w, p, ev, e.cfg.prefix, &t.Cuts); err != nil {
		return nil, Template{}, wrap(err)
	}
	t.Value = buf.w.Buffer()
	return key, t, nil
}

// EncodeKey returns the record key of a row of t for topic, e.g. for the tombstone that follows a
// delete. It returns nil when t has no key columns.
func (e *Encoder) EncodeKey(ctx context.Context, topic string, t *change.Table, key change.Row) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("codec: encode key for topic %q: nil Table", topic)
	}
	p, err := e.plan(t)
	if err != nil {
		return nil, err
	}
	if len(p.keyCols) == 0 {
		return nil, nil
	}
	var b []byte
	if !e.isAvro() {
		b, err = e.encodeJSONKey(p, key)
	} else {
		b, err = e.encodeAvroKey(ctx, topic, p, key)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: encode key of %s for topic %q: %w", t.QualifiedName(), topic, err)
	}
	return b, nil
}

// encodeJSONKey writes a key in one of the JSON formats.
func (e *Encoder) encodeJSONKey(p *tablePlan, row change.Row) ([]byte, error) {
	bp := jsonBufPool.Get().(*[]byte)
	defer jsonBufPool.Put(bp)
	var b []byte
	var err error
	if e.cfg.format == FormatDebeziumJSON {
		b, err = appendConnectKey((*bp)[:0], p, row, e.cfg.prefix)
	} else {
		b, err = appendJSONRow((*bp)[:0], p.keyCols, row, true)
		if err != nil {
			err = fmt.Errorf("key: %w", err)
		}
	}
	*bp = b[:0]
	if err != nil {
		return nil, err
	}
	return detach(b), nil
}

func (e *Encoder) encodeAvroKey(ctx context.Context, topic string, p *tablePlan, row change.Row) ([]byte, error) {
	w := getWriter()
	defer putWriter(w)
	if err := e.writeHeader(ctx, w, topic, p.key, "-key"); err != nil {
		return nil, err
	}
	if err := writeRow(w, p.keyCols, row); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return detach(w.Buffer()), nil
}

// writeHeader writes the registry or single-object header of s, registering or publishing s first
// if that has not been done yet.
func (e *Encoder) writeHeader(ctx context.Context, w *avro.Writer, topic string, s *schemaEntry, suffix string) error {
	if e.cfg.registry != nil {
		id, err := e.registryID(ctx, topic, s, suffix)
		if err != nil {
			return err
		}
		var h [registryHeaderLen]byte
		h[0] = registryMagic
		binary.BigEndian.PutUint32(h[1:], id)
		_, _ = w.Write(h[:])
		return nil
	}
	if !s.published.Load() && e.cfg.publisher != nil {
		if err := e.publish(ctx, s); err != nil {
			return err
		}
	}
	if e.cfg.format == FormatAvroConfluent {
		// The Confluent framing with an id derived from the fingerprint: the schema topic
		// stays the only store, and the registry API serves it under the same id.
		var h [registryHeaderLen]byte
		h[0] = registryMagic
		binary.BigEndian.PutUint32(h[1:], ConfluentID(s.fp))
		_, _ = w.Write(h[:])
		return nil
	}
	_, _ = w.Write(s.soe[:])
	return nil
}

func (e *Encoder) publish(ctx context.Context, s *schemaEntry) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.published.Load() {
		return nil
	}
	if err := e.cfg.publisher(ctx, s.fp, s.json); err != nil {
		return fmt.Errorf("publish schema %016x: %w", s.fp, err)
	}
	s.published.Store(true)
	return nil
}

func (e *Encoder) registryID(ctx context.Context, topic string, s *schemaEntry, suffix string) (uint32, error) {
	if id, ok := s.ids.Load(topic); ok {
		return id.(uint32), nil
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if id, ok := s.ids.Load(topic); ok {
		return id.(uint32), nil
	}
	subject := topic + suffix
	id, err := e.cfg.registry.RegisterSchema(ctx, subject, sr.Schema{Schema: string(s.json), Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, fmt.Errorf("register schema %016x under subject %q: %w", s.fp, subject, err)
	}
	if id < 0 || int64(id) > int64(^uint32(0)) {
		return 0, fmt.Errorf("registry returned schema id %d for subject %q, out of the 4-byte range", id, subject)
	}
	s.ids.Store(topic, uint32(id))
	return uint32(id), nil
}

// plan returns the cached plan of t, deriving it on first use.
func (e *Encoder) plan(t *change.Table) (*tablePlan, error) {
	if p, ok := e.plans.Load(t); ok {
		return p.(*tablePlan), nil
	}
	p, err := e.newPlan(t)
	if err != nil {
		return nil, fmt.Errorf("codec: derive schema of table %s: %w", t.QualifiedName(), err)
	}
	actual, _ := e.plans.LoadOrStore(t, p)
	return actual.(*tablePlan), nil
}

func (e *Encoder) newPlan(t *change.Table) (*tablePlan, error) {
	p := &tablePlan{table: t}
	seen := make(map[string]bool, len(t.Columns))
	for i := range t.Columns {
		c := &t.Columns[i]
		if seen[c.Name] {
			return nil, fmt.Errorf("duplicate column %q", c.Name)
		}
		seen[c.Name] = true
		if c.Kind == change.KindArray {
			if _, _, ok := avroTypeOf(c.Elem); !ok {
				return nil, fmt.Errorf("column %q: array element kind %s is not supported", c.Name, c.Elem)
			}
		} else if _, _, ok := avroTypeOf(c.Kind); !ok {
			return nil, fmt.Errorf("column %q: kind %s (%d) is not supported", c.Name, c.Kind, int(c.Kind))
		}
		p.cols = append(p.cols, newColPlan(c, !c.Key))
		if c.Key {
			p.keyCols = append(p.keyCols, newColPlan(c, false))
		}
	}
	if !e.isAvro() {
		return p, nil
	}
	d, err := deriveSchemas(e.cfg.prefix, t)
	if err != nil {
		return nil, err
	}
	if p.value, err = e.entry(d.value); err != nil {
		return nil, err
	}
	if d.key != nil {
		if p.key, err = e.entry(d.key); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// entry returns the shared entry of a schema, by full JSON.
func (e *Encoder) entry(s avro.Schema) (*schemaEntry, error) {
	js, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("marshal schema: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if se, ok := e.schemas[string(js)]; ok {
		return se, nil
	}
	fp, err := Fingerprint(s)
	if err != nil {
		return nil, err
	}
	se := &schemaEntry{schema: s, json: js, fp: fp}
	se.soe[0], se.soe[1] = soeMagic0, soeMagic1
	binary.LittleEndian.PutUint64(se.soe[2:], fp)
	e.schemas[string(js)] = se
	return se, nil
}

// Schemas returns the full JSON of the Avro key and value schemas the encoder uses for t (key is
// nil when t has no key columns), as published or registered.
func (e *Encoder) Schemas(t *change.Table) (key, value []byte, err error) {
	if !e.isAvro() {
		return nil, nil, fmt.Errorf("codec: schemas of %s: format %q has no schemas", t.QualifiedName(), e.cfg.format)
	}
	p, err := e.plan(t)
	if err != nil {
		return nil, nil, err
	}
	if p.key != nil {
		key = p.key.json
	}
	return key, p.value.json, nil
}

// SourceSchema returns the JSON of the io.debezium.connector.postgresql.Source record that every
// envelope embeds.
func SourceSchema() []byte {
	b, err := json.Marshal(sourceSchema)
	if err != nil {
		panic(err) // a fixed, valid schema
	}
	return b
}
