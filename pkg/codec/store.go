package codec

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"

	"github.com/hamba/avro/v2"
)

// SchemasTopicSuffix ends the name of the compacted topic that holds every Avro schema written
// without a registry: "<prefix>._schemas".
const SchemasTopicSuffix = "._schemas"

// SchemasTopic is the name of the schemas topic for a topic prefix: "<prefix>._schemas".
func SchemasTopic(prefix string) string { return prefix + SchemasTopicSuffix }

// FingerprintKey is the record key of a schema in the _schemas topic: the fingerprint as 16
// lower-case hexadecimal characters, most significant first (fmt's %016x). The record value is the
// full schema JSON, properties included, exactly as given to the SchemaPublisher.
func FingerprintKey(fp uint64) []byte {
	var b [8]byte
	for i := range 8 {
		b[i] = byte(fp >> (56 - 8*i))
	}
	dst := make([]byte, 16)
	hex.Encode(dst, b[:])
	return dst
}

// ParseFingerprintKey is the inverse of FingerprintKey.
func ParseFingerprintKey(key []byte) (uint64, error) {
	if len(key) != 16 {
		return 0, fmt.Errorf("codec: schema record key %q: want 16 hex characters, got %d bytes", key, len(key))
	}
	fp, err := strconv.ParseUint(string(key), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("codec: schema record key %q: %w", key, err)
	}
	return fp, nil
}

// SchemaStore holds writer schemas by fingerprint for decoding single-object encoded messages. It
// is safe for concurrent use; lookups take no lock.
//
// Fill it from the _schemas topic with AddRecord (or Add with each record's value). Two schemas
// that differ only in properties share a fingerprint; the one added last wins, as it does in the
// compacted topic.
type SchemaStore struct {
	mu      sync.Mutex // serialises writers
	schemas sync.Map   // uint64 -> *storedSchema
	ids     sync.Map   // uint32 ConfluentID -> uint64 fingerprint, the first one seen with it
	order   []uint64   // fingerprints in the order first added (the schema topic's order)
}

// ConfluentID is the schema id that FormatAvroConfluent writes for a schema: the low 31 bits of
// its CRC-64-AVRO fingerprint (Confluent ids are positive 32-bit integers), 0 becoming 1. It is
// derived, not allocated, so every capture and every registry endpoint agrees on it without
// coordination. Two schemas may share an id (about one chance in 4 million for a thousand
// schemas); the store keeps the first one written to the schema topic for it.
func ConfluentID(fp uint64) uint32 {
	id := uint32(fp & 0x7fffffff)
	if id == 0 {
		id = 1 // a zero id reads as "no id" to some clients
	}
	return id
}

type storedSchema struct {
	schema avro.Schema
	raw    string
}

// NewSchemaStore returns an empty SchemaStore.
func NewSchemaStore() *SchemaStore { return &SchemaStore{} }

// Add parses an Avro schema and stores it under its CRC-64-AVRO fingerprint, which it returns.
func (s *SchemaStore) Add(schema []byte) (uint64, error) {
	return s.add(schema, nil)
}

// AddRecord stores the schema of one record of the _schemas topic and returns its fingerprint.
// It checks that the key is the fingerprint of the value. A record with a nil value (a tombstone)
// is ignored: schemas are never withdrawn, old messages may still need them.
func (s *SchemaStore) AddRecord(key, value []byte) (uint64, error) {
	want, err := ParseFingerprintKey(key)
	if err != nil {
		return 0, err
	}
	if value == nil {
		return want, nil
	}
	return s.add(value, &want)
}

func (s *SchemaStore) add(schema []byte, want *uint64) (uint64, error) {
	parsed, err := parseSchema(schema)
	if err != nil {
		return 0, fmt.Errorf("codec: parse schema %.80q: %w", schema, err)
	}
	fp, err := Fingerprint(parsed)
	if err != nil {
		return 0, err
	}
	if want != nil && fp != *want {
		return 0, fmt.Errorf("codec: schema record key %016x does not match the fingerprint %016x of its schema", *want, fp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.schemas.Load(fp); ok && old.(*storedSchema).raw == string(schema) {
		return fp, nil // keep the parsed instance, and with it the decoders compiled for it
	}
	if _, seen := s.schemas.Load(fp); !seen {
		s.order = append(s.order, fp)
	}
	s.schemas.Store(fp, &storedSchema{schema: parsed, raw: string(schema)})
	s.ids.LoadOrStore(ConfluentID(fp), fp)
	return fp, nil
}

// LookupID returns the schema whose ConfluentID is id, and its fingerprint.
func (s *SchemaStore) LookupID(id uint32) (avro.Schema, uint64, bool) {
	fp, ok := s.ids.Load(id)
	if !ok {
		return nil, 0, false
	}
	sc, ok := s.Lookup(fp.(uint64))
	return sc, fp.(uint64), ok
}

// Raw returns the schema JSON stored under fingerprint fp, as it was added.
func (s *SchemaStore) Raw(fp uint64) (string, bool) {
	v, ok := s.schemas.Load(fp)
	if !ok {
		return "", false
	}
	return v.(*storedSchema).raw, true
}

// Fingerprints lists the fingerprints of the store in the order they were first added.
func (s *SchemaStore) Fingerprints() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.order...)
}

// Lookup returns the schema with fingerprint fp.
func (s *SchemaStore) Lookup(fp uint64) (avro.Schema, bool) {
	v, ok := s.schemas.Load(fp)
	if !ok {
		return nil, false
	}
	return v.(*storedSchema).schema, true
}

// Len is the number of schemas in the store.
func (s *SchemaStore) Len() int {
	n := 0
	s.schemas.Range(func(any, any) bool { n++; return true })
	return n
}
