package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/change"
)

// DecoderOpt configures a Decoder.
type DecoderOpt interface{ applyDecoder(*decoderCfg) }

type decoderOpt struct{ fn func(*decoderCfg) }

func (o decoderOpt) applyDecoder(c *decoderCfg) { o.fn(c) }

type decoderCfg struct {
	registry    *sr.Client
	setReg      bool
	store       *SchemaStore
	placeholder string
	ph          *placeholder
}

// DecoderRegistry sets the Schema Registry that resolves the schema ids of messages in the
// Confluent wire format. Without it such messages fail to decode.
func DecoderRegistry(cl *sr.Client) DecoderOpt {
	return decoderOpt{func(c *decoderCfg) { c.registry, c.setReg = cl, true }}
}

// Schemas sets the store that resolves the fingerprints of single-object encoded messages
// (usually fed from the <prefix>._schemas topic). Without it the decoder has an empty store of its
// own, and such messages fail with ErrUnknownSchema.
func Schemas(s *SchemaStore) DecoderOpt {
	return decoderOpt{func(c *decoderCfg) { c.store = s }}
}

// UnavailableValue sets the placeholder that Debezium writes for unchanged TOASTed columns, its
// unavailable.value.placeholder (default DefaultUnavailableValue); a value starting with "hex:" is
// the octets its hex digits spell, as in Debezium. A column holding it decodes as backflow's own
// unchanged TOAST does: listed in Event.UnchangedToast, nil in After, so sinks leave it alone.
// The empty string means the default.
func UnavailableValue(placeholder string) DecoderOpt {
	return decoderOpt{func(c *decoderCfg) { c.placeholder = placeholder }}
}

// Decoder turns Kafka records written by an Encoder, or by Debezium in JSON, back into change
// events. It detects the encoding of each message from its first bytes. It is safe for concurrent
// use.
//
// Decoded events of one writer schema share one *change.Table, so a new pointer means a new shape
// here too. Avro rows have an entry for every column of the table, nil for NULL (on the wire a
// missing column and a NULL are the same); the Go type of every value is the one package change
// lists for the column's kind.
type Decoder struct {
	cfg decoderCfg

	compiled sync.Map // avro.Schema (from the store) -> *compiledSchema
	byID     sync.Map // int32 registry id -> *compiledSchema
	regMu    sync.Mutex

	tablesMu sync.Mutex
	tables   map[string]*change.Table // JSON table shapes by signature

	connectSchemas     sync.Map // Connect schema JSON text -> *parsedConnectSchema
	connectSchemaCount atomic.Int64
}

// NewDecoder returns a Decoder configured by opts.
func NewDecoder(opts ...DecoderOpt) (*Decoder, error) {
	var cfg decoderCfg
	for _, o := range opts {
		o.applyDecoder(&cfg)
	}
	if cfg.setReg && cfg.registry == nil {
		return nil, errors.New("codec: DecoderRegistry given a nil *sr.Client")
	}
	if cfg.store == nil {
		cfg.store = NewSchemaStore()
	}
	if cfg.placeholder == "" {
		cfg.placeholder = DefaultUnavailableValue
	}
	var err error
	if cfg.ph, err = parsePlaceholder(cfg.placeholder); err != nil {
		return nil, err
	}
	return &Decoder{cfg: cfg, tables: make(map[string]*change.Table)}, nil
}

// Decode decodes the record (key, value) of topic. A nil or empty value is a tombstone and
// decodes to (nil, nil), and so do the records of Debezium that are no row change: heartbeats,
// transaction metadata and logical decoding messages. Avro values carry everything, so key is
// only read for JSON, where it says which columns are key columns (JSON has no schema to say it).
func (d *Decoder) Decode(ctx context.Context, topic string, key, value []byte) (*change.Event, error) {
	if len(value) == 0 || isHeartbeatTopic(topic) {
		return nil, nil
	}
	if isJSON(value) {
		ev, err := d.decodeJSON(topic, key, value)
		if err != nil {
			return nil, fmt.Errorf("codec: decode JSON value of topic %q: %w", topic, err)
		}
		if ev != nil {
			resolveUnavailable(ev)
		}
		return ev, nil
	}
	cs, body, what, err := d.writerSchema(ctx, value)
	if err != nil {
		return nil, fmt.Errorf("codec: decode value of topic %q: %w", topic, err)
	}
	if isDebeziumControl(cs.schema) {
		return nil, nil
	}
	p, err := cs.envelope()
	if err != nil {
		return nil, fmt.Errorf("codec: decode value of topic %q: writer schema %s: %w", topic, what, err)
	}
	ev, err := decodeBody(body, p.read)
	if err != nil {
		return nil, fmt.Errorf("codec: decode value of topic %q with writer schema %s: %w", topic, what, err)
	}
	switch ev.Op {
	case change.OpRead, change.OpCreate, change.OpUpdate, change.OpDelete, change.OpTruncate:
	case opMessage:
		return nil, nil
	default:
		return nil, fmt.Errorf("codec: decode value of topic %q with writer schema %s: unknown op %q", topic, what, ev.Op)
	}
	if p.placeholders {
		resolveUnavailable(ev)
	}
	return ev, nil
}

// DecodeKey decodes a record key of topic into the key columns' table shape and values, e.g. for
// a tombstone. A nil or empty key gives (nil, nil, nil). For JSON keys the kinds are inferred from
// the values.
func (d *Decoder) DecodeKey(ctx context.Context, topic string, key []byte) (*change.Table, change.Row, error) {
	if len(key) == 0 {
		return nil, nil, nil
	}
	if isJSON(key) {
		t, row, err := d.decodeJSONKey(topic, key)
		if err != nil {
			return nil, nil, fmt.Errorf("codec: decode JSON key of topic %q: %w", topic, err)
		}
		return t, row, nil
	}
	cs, body, what, err := d.writerSchema(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("codec: decode key of topic %q: %w", topic, err)
	}
	p, err := cs.record("key")
	if err != nil {
		return nil, nil, fmt.Errorf("codec: decode key of topic %q: writer schema %s: %w", topic, what, err)
	}
	row, err := decodeBody(body, p.read)
	if err != nil {
		return nil, nil, fmt.Errorf("codec: decode key of topic %q with writer schema %s: %w", topic, what, err)
	}
	return p.table, row, nil
}

// flatRowHint ends the error of a value that is not a change envelope: most often a row that
// Debezium's ExtractNewRecordState transform (unwrap) took out of its envelope, which a sink
// reads only when told (DecodeRow), since a tombstone there is the delete itself.
const flatRowHint = "a row without its envelope, as Debezium's ExtractNewRecordState (unwrap) transform writes: " +
	"a sink reads such topics with envelope: none, where tombstones are deletes"

// isJSON reports whether b starts, after white space, with '{'.
func isJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// writerSchema finds the writer schema of an Avro message from its header and returns the body.
// what names the schema in errors.
// schemaRef names a writer schema in messages: its registry id or its fingerprint. It is
// formatted only when a message needs it, not for every record.
type schemaRef struct {
	registry bool
	id       int32
	fp       uint64
}

func (r schemaRef) String() string {
	if r.registry {
		return fmt.Sprintf("id %d", r.id)
	}
	return fmt.Sprintf("%016x", r.fp)
}

func (d *Decoder) writerSchema(ctx context.Context, msg []byte) (*compiledSchema, []byte, schemaRef, error) {
	switch {
	case msg[0] == registryMagic:
		if len(msg) < registryHeaderLen {
			return nil, nil, schemaRef{}, fmt.Errorf("registry-framed message of %d bytes is shorter than its %d-byte header", len(msg), registryHeaderLen)
		}
		id := int32(binary.BigEndian.Uint32(msg[1:registryHeaderLen]))
		if s, _, ok := d.cfg.store.LookupID(uint32(id)); ok {
			// FormatAvroConfluent: the id names a schema of the schema topic.
			return d.compiledFor(s), msg[registryHeaderLen:], schemaRef{registry: true, id: id}, nil
		}
		cs, err := d.registrySchema(ctx, id)
		if err != nil {
			return nil, nil, schemaRef{}, err
		}
		return cs, msg[registryHeaderLen:], schemaRef{registry: true, id: id}, nil
	case len(msg) >= 2 && msg[0] == soeMagic0 && msg[1] == soeMagic1:
		if len(msg) < soeHeaderLen {
			return nil, nil, schemaRef{}, fmt.Errorf("single-object message of %d bytes is shorter than its %d-byte header", len(msg), soeHeaderLen)
		}
		fp := binary.LittleEndian.Uint64(msg[2:soeHeaderLen])
		s, ok := d.cfg.store.Lookup(fp)
		if !ok {
			return nil, nil, schemaRef{}, fmt.Errorf("%w: fingerprint %016x is not in the schema store", ErrUnknownSchema, fp)
		}
		return d.compiledFor(s), msg[soeHeaderLen:], schemaRef{fp: fp}, nil
	}
	n := min(len(msg), 4)
	return nil, nil, schemaRef{}, fmt.Errorf("unrecognised encoding: first bytes % x are neither 00 (registry), c3 01 (single-object) nor '{' (JSON)", msg[:n])
}

// compiledFor returns the compiled form of a schema of the store, compiling it on first use.
func (d *Decoder) compiledFor(s avro.Schema) *compiledSchema {
	v, ok := d.compiled.Load(s)
	if !ok {
		v, _ = d.compiled.LoadOrStore(s, &compiledSchema{schema: s, ph: d.cfg.ph})
	}
	return v.(*compiledSchema)
}

func (d *Decoder) registrySchema(ctx context.Context, id int32) (*compiledSchema, error) {
	if v, ok := d.byID.Load(id); ok {
		return v.(*compiledSchema), nil
	}
	if d.cfg.registry == nil {
		// Without a registry the id can only be a derived one (avro-confluent) whose schema
		// the schema topic has not given yet: unknown, so callers read the topic again.
		return nil, fmt.Errorf("%w: schema id %d is not in the schema store and the decoder has no registry", ErrUnknownSchema, id)
	}
	d.regMu.Lock()
	defer d.regMu.Unlock()
	if v, ok := d.byID.Load(id); ok {
		return v.(*compiledSchema), nil
	}
	s, err := d.cfg.registry.SchemaByID(ctx, int(id))
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == sr.ErrSchemaNotFound.Code {
			return nil, fmt.Errorf("%w: registry has no schema id %d: %w", ErrUnknownSchema, id, err)
		}
		// Anything else (connection refused, timeout, 5xx, 429, 401, a bare 404 from a proxy
		// in front of the registry) is no answer about this id: only error_code 40403 is.
		return nil, fmt.Errorf("%w: fetch schema id %d from the registry: %w", ErrUnavailable, id, err)
	}
	if s.Type != sr.TypeAvro {
		return nil, fmt.Errorf("registry schema id %d is %s, not Avro", id, s.Type)
	}
	if len(s.References) > 0 {
		return nil, fmt.Errorf("registry schema id %d has references, which are not supported", id)
	}
	parsed, err := parseSchema([]byte(s.Schema))
	if err != nil {
		return nil, fmt.Errorf("parse registry schema id %d: %w", id, err)
	}
	cs := &compiledSchema{schema: parsed, ph: d.cfg.ph}
	d.byID.Store(id, cs)
	return cs, nil
}

// Schemas returns the decoder's schema store.
func (d *Decoder) Schemas() *SchemaStore { return d.cfg.store }

const maxJSONTables = 4096
