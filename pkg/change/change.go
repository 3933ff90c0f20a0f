// Package change is the row-change event model shared by capture, codecs and sinks.
//
// Values in a Row are already in their on-the-wire form, the same one Debezium uses, so that
// codecs map them one to one onto Avro primitives and JSON and sinks read them back unchanged:
//
//	KindInt16, KindInt32   int32
//	KindInt64              int64
//	KindFloat32            float32
//	KindFloat64            float64
//	KindNumeric            string, the exact decimal text ("12.340", "NaN")
//	KindBool               bool
//	KindString, KindEnum   string
//	KindBytes              []byte
//	KindDate               int32, days since 1970-01-01
//	KindTime               int64, microseconds since midnight
//	KindTimestamp          int64, microseconds since 1970-01-01 00:00:00 (no zone)
//	KindTimestampTZ        string, RFC 3339 in UTC with microseconds ("2024-05-01T10:00:00.000001Z")
//	KindInterval           string, ISO 8601 duration ("P1Y2M3DT4H5M6.5S")
//	KindUUID               string, canonical lower-case form
//	KindJSON               string, the JSON text as stored (json keeps its spacing, jsonb is normalised)
//	KindArray              []any whose elements have the element kind's form (nil for NULL)
//
// A nil value is SQL NULL.
package change

// Op is the kind of change, with Debezium's letters.
type Op string

// The operations of the event contract.
const (
	OpRead     Op = "r" // row read by a snapshot
	OpCreate   Op = "c" // insert
	OpUpdate   Op = "u" // update
	OpDelete   Op = "d" // delete
	OpTruncate Op = "t" // truncate of the whole table
)

// Kind is the logical type of a column value; see the package doc for each kind's Go form.
type Kind int

// The column kinds.
const (
	KindString Kind = iota
	KindInt16
	KindInt32
	KindInt64
	KindFloat32
	KindFloat64
	KindNumeric
	KindBool
	KindBytes
	KindDate
	KindTime
	KindTimestamp
	KindTimestampTZ
	KindInterval
	KindUUID
	KindJSON
	KindEnum
	KindArray
)

var kindNames = [...]string{
	KindString: "string", KindInt16: "int16", KindInt32: "int32", KindInt64: "int64",
	KindFloat32: "float32", KindFloat64: "float64", KindNumeric: "numeric", KindBool: "bool",
	KindBytes: "bytes", KindDate: "date", KindTime: "time", KindTimestamp: "timestamp",
	KindTimestampTZ: "timestamptz", KindInterval: "interval", KindUUID: "uuid", KindJSON: "json",
	KindEnum: "enum", KindArray: "array",
}

// String returns the kind's name as used in schemas and docs.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, bool) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), true
		}
	}
	return 0, false
}

// Column describes one column of a table.
type Column struct {
	Name    string // column name as in PostgreSQL
	Kind    Kind   // logical type
	Elem    Kind   // element kind when Kind is KindArray
	PGType  string // PostgreSQL type name, e.g. "int4", "numeric", "_text", or the enum's name
	TypeOID uint32 // PostgreSQL type OID
	Key     bool   // part of the event key (primary key or configured key)
}

// Table is the shape of a table at one point in the change stream. A new *Table is made whenever
// the shape changes (ADD/DROP COLUMN, type change); tables are never mutated once published.
type Table struct {
	Schema  string
	Name    string
	Columns []Column
}

// KeyColumns returns the key columns in table order.
func (t *Table) KeyColumns() []Column {
	var ks []Column
	for _, c := range t.Columns {
		if c.Key {
			ks = append(ks, c)
		}
	}
	return ks
}

// Column returns the column named name.
func (t *Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// QualifiedName is "schema.table".
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Row maps column names to values in the forms listed in the package doc.
type Row map[string]any

// Source says where and when a change happened, as Debezium's source block does.
type Source struct {
	Connector string // always "postgresql"
	Name      string // the topic prefix
	DB        string
	Schema    string
	Table     string
	TxID      int64  // transaction id (xid), 0 for snapshot reads
	LSN       int64  // LSN of the change (commit LSN of its transaction for streamed changes)
	TsMs      int64  // commit time in ms since the epoch (snapshot start for reads)
	Snapshot  string // "true" or "last" (initial snapshot), SnapshotIncremental (re-snapshot) or "false"
}

// SnapshotIncremental is Source.Snapshot for a re-snapshot's reads, as in Debezium's incremental
// snapshots: the row may replace an older version a target already holds.
const SnapshotIncremental = "incremental"

// Event is one row change.
type Event struct {
	Op     Op
	Table  *Table
	Before Row // nil for inserts and reads; key columns only unless REPLICA IDENTITY FULL
	After  Row // nil for deletes and truncates
	// UnchangedToast lists columns of After whose values PostgreSQL did not send because they are
	// TOASTed and unchanged. Their After value is nil and means "keep what the target has", never
	// NULL; sinks leave these columns out of their updates.
	UnchangedToast []string
	Source         Source
	TsMs           int64 // when backflow produced the event, ms since the epoch
}

// Key returns the event's key columns and values: from After, or Before for deletes.
func (e *Event) Key() Row {
	row := e.After
	if row == nil {
		row = e.Before
	}
	k := make(Row, 2)
	for _, c := range e.Table.Columns {
		if c.Key {
			k[c.Name] = row[c.Name]
		}
	}
	return k
}
