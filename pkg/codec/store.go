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
	s.schemas.Store(fp, &storedSchema{schema: parsed, raw: string(schema)})
	return fp, nil
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
