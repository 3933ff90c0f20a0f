package codec

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
)

// Kafka Connect JsonConverter form (FormatDebeziumJSON): every key and value is
// {"schema": <Connect schema>, "payload": <value>}, with the Connect types and Debezium's logical
// names that Debezium's PostgreSQL connector uses, so Kafka Connect sinks and Debezium consumers
// read it as they read Debezium's own topics.

// decimalName is Kafka Connect's logical decimal: bytes holding the big-endian two's-complement
// unscaled value, the scale in the "scale" parameter.
const decimalName = "org.apache.kafka.connect.data.Decimal"

// connectTypeOf is the Connect type and logical name of a non-array kind, as Debezium writes the
// PostgreSQL types behind it with decimal.handling.mode=precise,
// time.precision.mode=adaptive_time_microseconds and interval.handling.mode=string (backflow's
// values are microseconds and ISO 8601 text already).
func connectTypeOf(k change.Kind) (ctype, name string) {
	switch k {
	case change.KindInt16:
		return "int16", ""
	case change.KindInt32:
		return "int32", ""
	case change.KindInt64:
		return "int64", ""
	case change.KindFloat32:
		return "float", ""
	case change.KindFloat64:
		return "double", ""
	case change.KindNumeric:
		return "bytes", decimalName
	case change.KindBool:
		return "boolean", ""
	case change.KindBytes:
		return "bytes", ""
	case change.KindDate:
		return "int32", semDate
	case change.KindTime:
		return "int64", semMicroTime
	case change.KindTimestamp:
		return "int64", semMicroTimestamp
	case change.KindTimestampTZ:
		return "string", semZonedTimestamp
	case change.KindInterval:
		return "string", semInterval
	case change.KindUUID:
		return "string", semUUID
	case change.KindJSON:
		return "string", semJSON
	case change.KindEnum:
		return "string", semEnum
	}
	return "string", ""
}

// appendConnectScalarSchema appends the members of a non-array Connect schema after its "{".
// scale is the Decimal scale of numeric kinds.
func appendConnectScalarSchema(b []byte, k change.Kind, optional bool, scale int) []byte {
	ctype, name := connectTypeOf(k)
	b = append(b, `"type":"`...)
	b = append(b, ctype...)
	b = append(b, `","optional":`...)
	b = strconv.AppendBool(b, optional)
	if name != "" {
		b = append(b, `,"name":"`...)
		b = append(b, name...)
		b = append(b, `","version":1`...)
	}
	if k == change.KindNumeric {
		b = append(b, `,"parameters":{"scale":"`...)
		b = strconv.AppendInt(b, int64(scale), 10)
		b = append(b, `"}`...)
	}
	return b
}

// appendConnectField appends the schema of a column as a field of a struct.
func appendConnectField(b []byte, c *colPlan, optional bool, scale int) []byte {
	b = append(b, '{')
	if c.kind == change.KindArray {
		b = append(b, `"type":"array","items":{`...)
		b = appendConnectScalarSchema(b, c.elem, true, scale)
		b = append(b, `},"optional":`...)
		b = strconv.AppendBool(b, optional)
	} else {
		b = appendConnectScalarSchema(b, c.kind, optional, scale)
	}
	b = append(b, `,"field":`...)
	b = appendJSONString(b, c.name)
	return append(b, '}')
}

// appendConnectStruct appends the struct schema of a row: a Value (optional, every non-key column
// optional) or a Key (required, all fields required). field is the name it has in the envelope,
// or "" at the top.
func appendConnectStruct(b []byte, cols []colPlan, scales []int, name, field string, optional bool) []byte {
	b = append(b, `{"type":"struct","fields":[`...)
	for i := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendConnectField(b, &cols[i], optional && cols[i].nullable, scales[i])
	}
	b = append(b, `],"optional":`...)
	b = strconv.AppendBool(b, optional)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, name)
	if field != "" {
		b = append(b, `,"field":`...)
		b = appendJSONString(b, field)
	}
	return append(b, '}')
}

// connectSourceSchema is the schema of the source block appendConnectEnvelope writes.
const connectSourceSchema = `{"type":"struct","fields":[` +
	`{"type":"string","optional":false,"field":"version"},` +
	`{"type":"string","optional":false,"field":"connector"},` +
	`{"type":"string","optional":false,"field":"name"},` +
	`{"type":"int64","optional":false,"field":"ts_ms"},` +
	`{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,` +
	`"parameters":{"allowed":"true,last,false,incremental"},"default":"false","field":"snapshot"},` +
	`{"type":"string","optional":false,"field":"db"},` +
	`{"type":"string","optional":false,"field":"schema"},` +
	`{"type":"string","optional":false,"field":"table"},` +
	`{"type":"int64","optional":true,"field":"txId"},` +
	`{"type":"int64","optional":true,"field":"lsn"}` +
	`],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}`

// connectEnvelopeTail is the schema of the envelope's members after before, after and source.
// unchanged_toast is backflow's: the columns whose after value is the unavailable-value
// placeholder (or null, for types that cannot hold it); Debezium consumers ignore it.
const connectEnvelopeTail = `,{"type":"string","optional":false,"field":"op"}` +
	`,{"type":"int64","optional":true,"field":"ts_ms"}` +
	`,{"type":"array","items":{"type":"string","optional":false},"optional":true,"field":"unchanged_toast"}]`

// recordName is Debezium's "<prefix>.<schema>.<table>.<suffix>".
func recordName(prefix string, t *change.Table, suffix string) string {
	return prefix + "." + t.Schema + "." + t.Name + "." + suffix
}

// decimalScales returns, for each column, the Decimal scale its values in rows need: the most
// digits after the point any of them has (numeric columns and arrays only; 0 elsewhere). Backflow's
// numerics carry their scale in each value, and a Connect Decimal has one per schema, which
// JsonConverter writes with every message.
func decimalScales(cols []colPlan, rows ...change.Row) []int {
	scales := make([]int, len(cols))
	for i := range cols {
		c := &cols[i]
		if c.kind != change.KindNumeric && (c.kind != change.KindArray || c.elem != change.KindNumeric) {
			continue
		}
		for _, row := range rows {
			if c.kind == change.KindArray {
				_, _ = forEachElem(row[c.name], func(_ int, e any) error {
					scales[i] = max(scales[i], numericScale(e))
					return nil
				})
				continue
			}
			scales[i] = max(scales[i], numericScale(row[c.name]))
		}
	}
	return scales
}

// numericScale is the number of digits after the point of a numeric value (0 if it is none).
func numericScale(v any) int {
	s, ok := v.(string)
	if !ok {
		return 0
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

// errNotFinite says a numeric value is NaN or an infinity, which a Decimal cannot hold.
var errNotFinite = errors.New("not a finite decimal")

// decimalBytes returns the unscaled value of the decimal text s at scale, big-endian two's
// complement in the fewest bytes (as Java's BigInteger.toByteArray, which Connect uses).
func decimalBytes(s string, scale int) ([]byte, error) {
	switch s {
	case "NaN", "Infinity", "-Infinity", "+Infinity":
		return nil, errNotFinite
	}
	digits, neg := strings.CutPrefix(s, "-")
	if !neg {
		digits = strings.TrimPrefix(digits, "+")
	}
	whole, frac, _ := strings.Cut(digits, ".")
	if len(frac) > scale || whole+frac == "" {
		return nil, fmt.Errorf("decimal %q does not fit scale %d", s, scale)
	}
	n, ok := new(big.Int).SetString(whole+frac+strings.Repeat("0", scale-len(frac)), 10)
	if !ok || strings.ContainsAny(whole+frac, "+-_") {
		return nil, fmt.Errorf("%q is not a decimal", s)
	}
	if neg {
		n.Neg(n)
	}
	return twosComplement(n), nil
}

func twosComplement(n *big.Int) []byte {
	size := n.BitLen()/8 + 1 // room for the sign bit
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) < size {
			b = append(make([]byte, size-len(b)), b...)
		}
		return b
	}
	m := new(big.Int).Lsh(big.NewInt(1), uint(size*8))
	m.Add(m, n)
	b := m.Bytes()
	if len(b) < size {
		b = append(make([]byte, size-len(b)), b...)
	}
	for len(b) > 1 && b[0] == 0xFF && b[1]&0x80 != 0 { // the fewest bytes that keep the sign
		b = b[1:]
	}
	return b
}

// appendConnectScalar appends a non-nil value of a non-array kind in its Connect JSON form.
func appendConnectScalar(b []byte, k change.Kind, v any, scale int) ([]byte, error) {
	if k != change.KindNumeric {
		return appendJSONScalar(b, k, v)
	}
	s, err := toText(k, v)
	if err != nil {
		return b, err
	}
	raw, err := decimalBytes(s, scale)
	if errors.Is(err, errNotFinite) {
		return append(b, "null"...), nil // a Decimal has no NaN or infinity; the column reads NULL
	}
	if err != nil {
		return b, err
	}
	return appendJSONScalar(b, change.KindBytes, raw)
}

// appendConnectValue appends the value of column c; unavailable writes the placeholder where the
// column's Connect type can hold it (string and bytes, and arrays of them) and null elsewhere.
func appendConnectValue(b []byte, c *colPlan, v any, scale int, unavailable bool) ([]byte, error) {
	if unavailable {
		return appendPlaceholder(b, c), nil
	}
	if v == nil {
		return append(b, "null"...), nil
	}
	if c.kind != change.KindArray {
		return appendConnectScalar(b, c.kind, v, scale)
	}
	b = append(b, '[')
	_, err := forEachElem(v, func(i int, e any) error {
		if i > 0 {
			b = append(b, ',')
		}
		if e == nil {
			b = append(b, "null"...)
			return nil
		}
		var err error
		if b, err = appendConnectScalar(b, c.elem, e, scale); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	return append(b, ']'), nil
}

// appendPlaceholder writes DefaultUnavailableValue as Debezium does for an unchanged TOASTed
// column of c's type.
func appendPlaceholder(b []byte, c *colPlan) []byte {
	k := c.kind
	if k == change.KindArray {
		k = c.elem
	}
	ctype, _ := connectTypeOf(k)
	var one []byte
	switch ctype {
	case "string":
		one = appendJSONString(nil, DefaultUnavailableValue)
	case "bytes":
		one, _ = appendJSONScalar(nil, change.KindBytes, []byte(DefaultUnavailableValue))
	default:
		return append(b, "null"...) // unchanged_toast still names it
	}
	if c.kind == change.KindArray {
		b = append(b, '[')
		b = append(b, one...)
		return append(b, ']')
	}
	return append(b, one...)
}

// appendConnectRow appends a row's payload: an object with the columns in table order. toast
// names the columns to write as unavailable.
func appendConnectRow(b []byte, cols []colPlan, row change.Row, scales []int, toast []string, key bool) ([]byte, error) {
	if row == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '{')
	for i := range cols {
		c := &cols[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.jsonName...)
		v := row[c.name]
		if v == nil && key {
			return b, fmt.Errorf("key column %q is NULL", c.name)
		}
		var err error
		if b, err = appendConnectValue(b, c, v, scales[i], containsString(toast, c.name)); err != nil {
			return b, fmt.Errorf("column %q (%s): %w", c.name, c.kind, err)
		}
	}
	return append(b, '}'), nil
}

// appendConnectKey appends a key in schema/payload form.
func appendConnectKey(b []byte, p *tablePlan, row change.Row, prefix string) ([]byte, error) {
	scales := decimalScales(p.keyCols, row)
	b = append(b, `{"schema":`...)
	b = appendConnectStruct(b, p.keyCols, scales, recordName(prefix, p.table, keyName), "", false)
	b = append(b, `,"payload":`...)
	b, err := appendConnectRow(b, p.keyCols, row, scales, nil, true)
	if err != nil {
		return b, fmt.Errorf("key: %w", err)
	}
	return append(b, '}'), nil
}

// appendConnectEnvelope appends an event's value in schema/payload form without its commit
// fields, marking their places in cuts (Template).
func appendConnectEnvelope(b []byte, p *tablePlan, ev *change.Event, prefix string, cuts *[numCuts]int) ([]byte, error) {
	if err := checkRow(p.table, p.cols, ev.Before); err != nil {
		return b, fmt.Errorf("before: %w", err)
	}
	if err := checkRow(p.table, p.cols, ev.After); err != nil {
		return b, fmt.Errorf("after: %w", err)
	}
	scales := decimalScales(p.cols, ev.Before, ev.After)
	value := recordName(prefix, p.table, valueName)
	b = append(b, `{"schema":{"type":"struct","fields":[`...)
	b = appendConnectStruct(b, p.cols, scales, value, "before", true)
	b = append(b, ',')
	b = appendConnectStruct(b, p.cols, scales, value, "after", true)
	b = append(b, ',')
	b = append(b, connectSourceSchema...)
	b = append(b, connectEnvelopeTail...)
	b = append(b, `,"optional":false,"name":`...)
	b = appendJSONString(b, recordName(prefix, p.table, envelopeName))
	b = append(b, `,"version":1},"payload":{"before":`...)
	var err error
	if b, err = appendConnectRow(b, p.cols, ev.Before, scales, nil, false); err != nil {
		return b, fmt.Errorf("before: %w", err)
	}
	b = append(b, `,"after":`...)
	if b, err = appendConnectRow(b, p.cols, ev.After, scales, ev.UnchangedToast, false); err != nil {
		return b, fmt.Errorf("after: %w", err)
	}
	b = appendJSONSource(b, &ev.Source, prefix, cuts)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, string(ev.Op))
	b = append(b, `,"ts_ms":`...)
	cuts[cutTsMs] = len(b)
	b = append(b, `,"unchanged_toast":`...)
	if len(ev.UnchangedToast) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range ev.UnchangedToast {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, c)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...), nil
}
