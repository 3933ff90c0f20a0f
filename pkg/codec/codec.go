// Package codec turns change events into Kafka record keys and values and back.
//
// The value is a Debezium-compatible envelope (before, after, source, op, ts_ms) plus
// unchanged_toast, the list of columns whose after value PostgreSQL did not send because it is
// TOASTed and unchanged; the key is a record of the table's key columns. schemas/README.md in the
// repository documents the contract for consumers.
//
// Three encodings exist, and a Decoder tells them apart by their first bytes:
//
//	0x00 + 4-byte big-endian schema id        Avro, Confluent Schema Registry wire format
//	0xC3 0x01 + 8-byte little-endian CRC-64   Avro single-object encoding; the schema is looked
//	                                          up by fingerprint in a SchemaStore fed from the
//	                                          <prefix>._schemas topic
//	'{'                                       JSON, Debezium's envelope (with or without its
//	                                          {"schema":…,"payload":…} wrapper: FormatJSON
//	                                          writes it without, FormatDebeziumJSON with)
//
// Besides backflow's own records, a Decoder reads what Debezium's PostgreSQL and MySQL connectors
// write (JsonConverter, AvroConverter with a Confluent registry), treats Debezium's
// unavailable-value placeholder as unchanged TOAST, and decodes its heartbeats, transaction
// metadata, logical decoding messages and schema change records to nothing.
//
// An Encoder derives the Avro schemas of a *change.Table once and caches them by pointer (a table
// is immutable; a new shape is a new pointer), so encoding an event costs no schema work and no
// reflection: values are written straight from the Row with hamba/avro's Writer.
//
// Encoders, Decoders and SchemaStores are safe for concurrent use.
package codec

import (
	"errors"

	"github.com/backflow-dev/backflow/pkg/buildinfo"
)

// The encodings accepted by Format.
const (
	FormatAvro = "avro" // Avro binary (the default)
	// FormatAvroConfluent is Avro in the Confluent wire format (magic byte 0, 4-byte schema id)
	// without an external registry: the id is ConfluentID of the schema's fingerprint, the schema
	// is published to the <prefix>._schemas topic as for FormatAvro, and `backflow registry`
	// serves that topic through the Confluent Schema Registry API.
	FormatAvroConfluent = "avro-confluent"
	FormatJSON          = "json" // Debezium's JSON envelope without the schema block
	// FormatDebeziumJSON is what Debezium writes through Kafka Connect's JsonConverter with
	// schemas.enable=true: key and value as {"schema":…,"payload":…} with Connect types and
	// Debezium's logical names, readable by Kafka Connect sinks and Debezium consumers.
	FormatDebeziumJSON = "debezium-json"
)

// ErrUnknownSchema is wrapped by decoding errors whose writer schema is not known: a single-object
// message whose fingerprint is not in the SchemaStore, or a registry id the registry does not
// have. Callers can refresh their SchemaStore from the _schemas topic and retry.
var ErrUnknownSchema = errors.New("codec: unknown writer schema")

// ErrUnavailable is wrapped by decoding errors that say nothing about the message: the schema
// registry could not be reached, timed out, or answered with an error other than "no such schema"
// (5xx, 429, a proxy's page). The same message may decode once the registry answers, so callers
// retry it later instead of treating it as undecodable. Errors wrapping ErrUnknownSchema or
// neither are about the message itself.
var ErrUnavailable = errors.New("codec: schema source unavailable")

// Magic bytes of the encodings.
const (
	registryMagic = 0x00 // Confluent wire format
	soeMagic0     = 0xC3 // Avro single-object encoding, first byte
	soeMagic1     = 0x01 // Avro single-object encoding, second byte

	registryHeaderLen = 5  // magic + 4-byte schema id
	soeHeaderLen      = 10 // magic + 8-byte fingerprint
)

// connectorName is the source.connector of every event backflow writes.
const connectorName = "postgresql"

// sourceVersion is written to source.version: "backflow", its version and its commit.
var sourceVersion = func() string {
	i := buildinfo.Read()
	return "backflow " + i.Version + " " + i.Commit
}()
