// Package mapping turns change events into the fields a sink writes: the `map`, `key` and `filter`
// of a sink in the pipeline file. Expressions are written in expr-lang
// (https://expr-lang.org/docs/language-definition), compiled once by Compile and evaluated per
// event by (*Mapping).Apply. A Mapping is immutable and safe for concurrent use.
//
// # Environment
//
// Every expression (map fields and the filter) sees these names; any other top-level name is a
// compile error, so a typo such as `afterr.qty` fails at startup:
//
//	after   map: the new row (column -> value); for deletes the old row merged with the event key,
//	        so `after.sku` still yields the key of a deleted row; nil map for truncates
//	before  map: the old row (every column with REPLICA IDENTITY FULL, the key columns otherwise);
//	        nil map for inserts, snapshot reads and truncates
//	key     map: the event key (primary key or configured key columns)
//	op      string: "r" snapshot read, "c" insert, "u" update, "d" delete, "t" truncate
//	source  where the change comes from: source.db, source.schema, source.table, source.lsn,
//	        source.txId, source.ts_ms (commit time, ms since the epoch), source.snapshot
//	table   string: "schema.table"
//
// Columns are dynamic, so `after.no_such_column` is not checked at compile time: it yields nil.
// Row values are the plain Go values of Values, except that numeric columns are float64 in the
// environment so that arithmetic works: `after.qty - after.reserved`, `after.price * 1.2`.
// A field whose expression is exactly one column (`after.price`, `after["unit price"]`,
// `before.price`, `key.id`) passes the column's plain value through unchanged, so a numeric keeps
// its exact decimal text. Times are time.Time (UTC) and support expr's date arithmetic and
// methods (`after.created_at.Year()`, `now() - after.updated_at > duration("1h")`).
//
// # Functions
//
// All of expr's builtins are available (upper, lower, trim, int, float, string, round, now, date,
// duration, fromJSON, toJSON, len, …, and the ?? and ?: operators; now() and date() default to
// UTC). Note that int() truncates: int(after.price * 100) is 1998 for a price of 19.99, because
// 19.99*100 is 1998.9999999999998 in floating point. Use cents for money. Added functions:
//
//	coalesce(a, b, ...)  the first argument that is not nil, or nil
//	concat(a, b, ...)    the text of the non-nil arguments, joined without separator; numbers in
//	                     plain decimal, times in RFC 3339
//	cents(x)             x*100 rounded half away from zero, as int64 (money in cents); x may be a
//	                     number or a decimal string; cents(nil) is nil
//
// # Filter
//
// The filter must be a boolean expression; a filter that is not (e.g. `after.name`, known to be a
// string only at run time) is an error for that record, like any failure of the filter. A filter
// that evaluates to nil (a NULL column, a missing column) rejects the record, like SQL's WHERE.
// Deletes and truncates are removals and pass unless the filter says false explicitly: nil, a
// non-bool or a failure keeps them, because the old row usually holds only the key
// (`filter: after.active` must not leave a deleted row behind in the target). Write
// `op != "d"` to skip deletes on purpose.
//
// # Missing values
//
// PostgreSQL does not send unchanged TOASTed columns (change.Event.UnchangedToast). When the
// before image has the value (REPLICA IDENTITY FULL) it is used, since it did not change;
// otherwise the column is unknown and every field whose expression reads it, by name or through
// the whole image (`toJSON(after)`), is left out of the result, so the target keeps its value.
// With the identity mapping (no `map`) such columns are left out too. In the same way, on deletes
// the non-key columns the old row lacks (absent, or nil as Avro decodes a key-only old row) are
// unknown: fields that read them, and non-key fields whose evaluation fails, are left out; key
// fields must evaluate.
package mapping
