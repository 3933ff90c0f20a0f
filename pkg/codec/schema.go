package codec

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// Schema property names. They let a decoder rebuild the exact change.Table from a writer schema.
const (
	propConnectName = "connect.name" // Debezium/Kafka Connect semantic type name
	propConnectType = "connect.type" // Kafka Connect type when Avro's is wider (int16)
	propConnectPars = "connect.parameters"
	propKind        = "backflow.kind" // change.Kind.String() of the column or array element
	propKey         = "backflow.key"  // true on the type of key columns
	propPGType      = "pg.type"       // change.Column.PGType
	propPGOID       = "pg.oid"        // change.Column.TypeOID
	propPGName      = "pg.name"       // on fields: the column's PostgreSQL name
	propPGSchema    = "pg.schema"     // on Value and Key records: change.Table.Schema
	propPGTable     = "pg.table"      // on Value and Key records: change.Table.Name
)

// Names of the records in the derived schemas.
const (
	envelopeName    = "Envelope"
	valueName       = "Value"
	keyName         = "Key"
	sourceNamespace = "io.debezium.connector.postgresql"
	sourceName      = "Source"
)

// The semantic names written to connect.name.
const (
	semDate           = "io.debezium.time.Date"
	semMicroTime      = "io.debezium.time.MicroTime"
	semMicroTimestamp = "io.debezium.time.MicroTimestamp"
	semZonedTimestamp = "io.debezium.time.ZonedTimestamp"
	semInterval       = "io.debezium.time.Interval"
	semUUID           = "io.debezium.data.Uuid"
	semJSON           = "io.debezium.data.Json"
	semEnum           = "io.debezium.data.Enum"
	semNumeric        = "backflow.Numeric"
)

// avroTypeOf is the Avro primitive type and semantic name of a non-array kind.
func avroTypeOf(k change.Kind) (avro.Type, string, bool) {
	switch k {
	case change.KindInt16, change.KindInt32:
		return avro.Int, "", true
	case change.KindInt64:
		return avro.Long, "", true
	case change.KindFloat32:
		return avro.Float, "", true
	case change.KindFloat64:
		return avro.Double, "", true
	case change.KindNumeric:
		return avro.String, semNumeric, true
	case change.KindBool:
		return avro.Boolean, "", true
	case change.KindString:
		return avro.String, "", true
	case change.KindEnum:
		return avro.String, semEnum, true
	case change.KindBytes:
		return avro.Bytes, "", true
	case change.KindDate:
		return avro.Int, semDate, true
	case change.KindTime:
		return avro.Long, semMicroTime, true
	case change.KindTimestamp:
		return avro.Long, semMicroTimestamp, true
	case change.KindTimestampTZ:
		return avro.String, semZonedTimestamp, true
	case change.KindInterval:
		return avro.String, semInterval, true
	case change.KindUUID:
		return avro.String, semUUID, true
	case change.KindJSON:
		return avro.String, semJSON, true
	}
	return "", "", false
}

// scalarSchema is the Avro type of a non-array kind, with its properties.
func scalarSchema(k change.Kind, props map[string]any) (avro.Schema, error) {
	typ, sem, ok := avroTypeOf(k)
	if !ok {
		return nil, fmt.Errorf("kind %s (%d) has no Avro mapping", k, int(k))
	}
	if props == nil {
		props = make(map[string]any, 2)
	}
	props[propKind] = k.String()
	if sem != "" {
		props[propConnectName] = sem
	}
	if k == change.KindInt16 {
		props[propConnectType] = "int16"
	}
	return avro.NewPrimitiveSchema(typ, nil, avro.WithProps(props)), nil
}

// columnSchema is the Avro type T of a column: not wrapped in a union.
func columnSchema(c *change.Column) (avro.Schema, error) {
	props := make(map[string]any, 6)
	if c.PGType != "" {
		props[propPGType] = c.PGType
	}
	if c.TypeOID != 0 {
		props[propPGOID] = c.TypeOID
	}
	if c.Key {
		props[propKey] = true
	}
	if c.Kind != change.KindArray {
		return scalarSchema(c.Kind, props)
	}
	if c.Elem == change.KindArray {
		return nil, fmt.Errorf("array of arrays is not supported")
	}
	elem, err := scalarSchema(c.Elem, nil)
	if err != nil {
		return nil, fmt.Errorf("array element: %w", err)
	}
	items, err := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), elem})
	if err != nil {
		return nil, err
	}
	props[propKind] = change.KindArray.String()
	return avro.NewArraySchema(items, avro.WithProps(props)), nil
}

// rowRecord builds the Value (all columns) or Key (key columns) record of t. fields receives the
// sanitised Avro field name of each included column, in table order.
func rowRecord(t *change.Table, name, ns string, keyOnly bool) (*avro.RecordSchema, []string, error) {
	var fields []*avro.Field
	var names []string
	used := make(map[string]bool, len(t.Columns))
	for i := range t.Columns {
		c := &t.Columns[i]
		if keyOnly && !c.Key {
			continue
		}
		typ, err := columnSchema(c)
		if err != nil {
			return nil, nil, fmt.Errorf("column %q: %w", c.Name, err)
		}
		opts := []avro.SchemaOption{avro.WithProps(map[string]any{propPGName: c.Name})}
		if !c.Key {
			u, err := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), typ})
			if err != nil {
				return nil, nil, fmt.Errorf("column %q: %w", c.Name, err)
			}
			typ = u
			opts = append(opts, avro.WithDefault(nil))
		}
		fname := uniqueName(AvroName(c.Name), used)
		f, err := avro.NewField(fname, typ, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("column %q (field %q): %w", c.Name, fname, err)
		}
		fields = append(fields, f)
		names = append(names, fname)
	}
	rec, err := avro.NewRecordSchema(name, ns, fields, avro.WithProps(map[string]any{
		propPGSchema:    t.Schema,
		propPGTable:     t.Name,
		propConnectName: ns + "." + name,
	}))
	if err != nil {
		return nil, nil, err
	}
	return rec, names, nil
}

// sourceSchema is the record io.debezium.connector.postgresql.Source, shared by all envelopes.
var sourceSchema = func() *avro.RecordSchema {
	must := func(f *avro.Field, err error) *avro.Field {
		if err != nil {
			panic(err)
		}
		return f
	}
	str := func() avro.Schema { return avro.NewPrimitiveSchema(avro.String, nil) }
	optLong := func() avro.Schema {
		u, err := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), avro.NewPrimitiveSchema(avro.Long, nil)})
		if err != nil {
			panic(err)
		}
		return u
	}
	snapshot := avro.NewPrimitiveSchema(avro.String, nil, avro.WithProps(map[string]any{
		propConnectName: semEnum,
		propConnectPars: map[string]any{"allowed": "true,last,false"},
	}))
	rec, err := avro.NewRecordSchema(sourceName, sourceNamespace, []*avro.Field{
		must(avro.NewField("version", str())),
		must(avro.NewField("connector", str())),
		must(avro.NewField("name", str())),
		must(avro.NewField("ts_ms", avro.NewPrimitiveSchema(avro.Long, nil))),
		must(avro.NewField("snapshot", snapshot, avro.WithDefault("false"))),
		must(avro.NewField("db", str())),
		must(avro.NewField("schema", str())),
		must(avro.NewField("table", str())),
		must(avro.NewField("txId", optLong(), avro.WithDefault(nil))),
		must(avro.NewField("lsn", optLong(), avro.WithDefault(nil))),
	}, avro.WithProps(map[string]any{propConnectName: sourceNamespace + "." + sourceName}))
	if err != nil {
		panic(err)
	}
	return rec
}()

// derived holds the Avro schemas of one table shape.
type derived struct {
	value      *avro.RecordSchema // Envelope
	key        *avro.RecordSchema // Key, nil without key columns
	valueNames []string           // Avro field names of the columns, table order
}

// deriveSchemas builds the Envelope and Key schemas of t under the namespace root prefix.
func deriveSchemas(prefix string, t *change.Table) (*derived, error) {
	ns := Namespace(prefix, t.Schema, t.Name)
	val, names, err := rowRecord(t, valueName, ns, false)
	if err != nil {
		return nil, err
	}
	d := &derived{valueNames: names}
	nullOr := func(s avro.Schema) avro.Schema {
		u, err2 := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), s})
		if err2 != nil {
			panic(err2) // both members are distinct types: cannot fail
		}
		return u
	}
	fields := make([]*avro.Field, 0, 6)
	add := func(name string, typ avro.Schema, opts ...avro.SchemaOption) {
		if err != nil {
			return
		}
		var f *avro.Field
		f, err = avro.NewField(name, typ, opts...)
		fields = append(fields, f)
	}
	add("before", nullOr(val), avro.WithDefault(nil))
	add("after", nullOr(avro.NewRefSchema(val)), avro.WithDefault(nil))
	add("source", sourceSchema)
	add("op", avro.NewPrimitiveSchema(avro.String, nil))
	add("ts_ms", nullOr(avro.NewPrimitiveSchema(avro.Long, nil)), avro.WithDefault(nil))
	add("unchanged_toast", avro.NewArraySchema(avro.NewPrimitiveSchema(avro.String, nil)), avro.WithDefault([]any{}))
	if err != nil {
		return nil, err
	}
	d.value, err = avro.NewRecordSchema(envelopeName, ns, fields,
		avro.WithProps(map[string]any{propConnectName: ns + "." + envelopeName}))
	if err != nil {
		return nil, err
	}
	if len(t.KeyColumns()) > 0 {
		d.key, _, err = rowRecord(t, keyName, ns, true)
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Namespace is the Avro namespace of a table's records: "<prefix>.<schema>.<table>", each
// dot-separated part made a valid Avro name with AvroName.
func Namespace(prefix, schema, table string) string {
	var b strings.Builder
	for _, p := range strings.Split(prefix, ".") {
		b.WriteString(AvroName(p))
		b.WriteByte('.')
	}
	b.WriteString(AvroName(schema))
	b.WriteByte('.')
	b.WriteString(AvroName(table))
	return b.String()
}

// AvroName makes s a valid Avro name ([A-Za-z_][A-Za-z0-9_]*): every other character becomes
// '_', a leading digit gets a '_' prefix, and the empty string becomes "_". Field names derived
// this way keep the original name in the "pg.name" property; when two columns of a table
// sanitise to the same name, the later one gets a "_2", "_3", … suffix.
func AvroName(s string) string {
	if s == "" {
		return "_"
	}
	valid := true
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			valid = false
			break
		}
	}
	if valid && !isDigit(s[0]) {
		return s
	}
	b := make([]byte, 0, len(s)+1)
	if isDigit(s[0]) {
		b = append(b, '_')
	}
	for i := 0; i < len(s); {
		if nameChar(s[i]) {
			b = append(b, s[i])
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		b = append(b, '_')
		i += size
	}
	return string(b)
}

func nameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// uniqueName returns name, or name with the lowest "_N" suffix (N ≥ 2) not yet in used, and
// records the result in used.
func uniqueName(name string, used map[string]bool) string {
	n := name
	for i := 2; used[n]; i++ {
		n = name + "_" + strconv.Itoa(i)
	}
	used[n] = true
	return n
}

// Fingerprint is the CRC-64-AVRO fingerprint of s's parsing canonical form, as a number. The
// single-object header holds it little-endian; FingerprintKey spells it in hex.
func Fingerprint(s avro.Schema) (uint64, error) {
	b, err := s.FingerprintUsing(avro.CRC64Avro)
	if err != nil {
		return 0, fmt.Errorf("codec: fingerprint of %s schema: %w", s.Type(), err)
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("codec: fingerprint of %s schema has %d bytes, want 8", s.Type(), len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// parseSchema parses a schema with a private name cache, so that the many versions of the same
// record names (one per table shape) never meet in hamba's global cache.
func parseSchema(b []byte) (avro.Schema, error) {
	return avro.ParseBytesWithCache(b, "", &avro.SchemaCache{})
}
