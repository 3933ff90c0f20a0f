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
// Columns are dynamic, so `after.no_such_column` is not checked at compile time; at run time
// reading a column the event does not carry fails the record (see Missing columns). Row values
// are the plain Go values of Values, except that numeric columns are exact decimals in the
// environment (see Numerics). A field whose expression is exactly one column (`after.price`,
// `after["unit price"]`, `before.price`, `key.id`) passes the column's plain value through
// unchanged, so a numeric keeps its exact decimal text. Times are time.Time (UTC) and support
// expr's date arithmetic and methods (`after.created_at.Year()`,
// `now() - after.updated_at > duration("1h")`). A date or timestamp that was `infinity` in
// PostgreSQL is the instant its Debezium extreme stands for (MaxInt32 days, MaxInt64
// microseconds since 1970; MIN for `-infinity`), later (earlier) than any other, so comparisons
// hold. Connectors write it back as PostgreSQL spells it where the target takes text (the
// postgres connector into date and timestamp columns too; Redis, webhooks and Kafka as the
// string "infinity" or "-infinity", as PostgreSQL's to_json does), and refuse the record where
// the target's date type cannot hold it (MySQL DATETIME, HubSpot, Salesforce), which sends it to
// the dead-letter topic with that reason.
//
// # Numerics
//
// NUMERIC columns compute exactly, in decimal, never in float64: `int(after.price * 100)` is 1999
// for a price of 19.99, `after.a + after.b == 0.3` holds for 0.1 and 0.2, and comparisons
// (`after.price > 19.98`, `==`, `in [19.99]`), sums (`sum(after.amounts)`, `sum(items, .price)`),
// `%`, unary minus, int (truncates toward zero), round (halves away from zero), ceil, floor,
// abs, max and min are exact too. A number written in the expression counts as its decimal text:
// `after.price * 1.2` is 23.988 exactly. Division keeps 16 decimal places, or as many as the
// operand with the most has, rounded half away from zero: `after.one / 3` is 0.3333333333333333
// and `after.one / 3 * 3 < 1`; divide last, or round, when that matters. Dividing a numeric by
// zero is an error. mean and median compute in float64; float(x) asks for float64 on purpose.
// string(x), concat and toJSON print a numeric's exact digits without trailing zeros.
// A numeric NaN or ±Infinity is a float64. A numeric that an expression computes is written as
// float64, as before (exact up to 15 significant digits; `string(x)` keeps every digit, and a
// field that is just the column keeps its text).
//
// # Functions
//
// All of expr's builtins are available (upper, lower, trim, int, float, string, round, now, date,
// duration, fromJSON, toJSON, len, …, and the ?? and ?: operators; now() and date() default to
// UTC). Added functions:
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
// that evaluates to nil (a NULL column) rejects the record, like SQL's WHERE.
// Deletes and truncates are removals and pass unless the filter says false explicitly: nil, a
// non-bool or a failure keeps them, because the old row usually holds only the key
// (`filter: after.active` must not leave a deleted row behind in the target). Write
// `op != "d"` to skip deletes on purpose.
//
// A filter that reads only the row (after, key, table: FilterSelectsRows) says which rows the
// target holds. An update it rejects may concern a row that passed before and is in the target:
// the sink then removes that row, as a delete of it would (its on_filter_out, delete by default,
// through its on_delete: ignore leaves the row, soft_delete marks it). The update is mapped by
// Removal: key fields must evaluate, the filter is not run again. A re-snapshot's read
// (source.snapshot "incremental": a table re-read after a rename swap, a lost slot or on
// request) is handled the same way, since the target may hold the row as it was. Inserts and
// initial snapshot reads the filter rejects are skipped: no earlier version of their row came
// before them. A filter that reads before, op or source selects changes, not rows; what it
// rejects is skipped.
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
// fields must evaluate. A filter that reads an unknown column sees nil.
//
// # Missing columns
//
// A mapping never makes up a NULL. When an event does not carry a column that a field or the
// filter reads by name (`after.name`, `after["unit price"]`, `before.name`, `key.id`) because the
// column was renamed or dropped at the source, or the mapping misspells it, Apply fails with a
// *MissingColumnError naming the sink, the field (or the filter) and the column, and the record
// is not written. The sink does not move on silently either: it holds the record's partition,
// logging the error and counting it in backflow_sink_mapping_errors_total{sink,field,column},
// shown as a problem in `backflow status`, and maps the record again under the sink's retry
// policy (retry.max_attempts, retry.max_elapsed): the record is not committed meanwhile, so a
// sink restarted with a fixed mapping before the policy gives up still writes it; once the
// policy gives up, the record goes to the dead-letter topic with the error as its reason (and
// `backflow replay --dlq` re-drives it after a fix). A column that is present with a NULL value is nil as usual. Not missing either: the
// unknown columns above; every column of `before` when the event has no old row (inserts,
// snapshot reads, most updates); a column of the table that the old row leaves out (without
// REPLICA IDENTITY FULL it holds only the key); on deletes, non-key fields that read a column
// the event lacks are left out, and the filter lets the delete through. To read a column that
// may be absent on purpose (during a rename), write `?.`: `after?.title ?? after?.name`;
// `"name" in after` tests for it. Columns read through the whole image (`toJSON(after)`,
// `$env`, `after[name]` with a computed name) are not checked.
package mapping
