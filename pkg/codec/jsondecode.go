package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
)

// connectSchema is a Kafka Connect JSON schema, as JsonConverter writes it with schemas enabled.
type connectSchema struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Field      string          `json:"field"`
	Optional   bool            `json:"optional"`
	Fields     []connectSchema `json:"fields"`
	Items      *connectSchema  `json:"items"`
	Parameters map[string]any  `json:"parameters"`
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// jsonField is one member of a JSON object, in document order.
type jsonField struct {
	name string
	raw  json.RawMessage
}

// unwrap returns the payload and schema of a {"schema":…,"payload":…} wrapper, or raw itself.
func unwrap(raw []byte) (payload, schema json.RawMessage, err error) {
	fields, err := splitObject(raw)
	if err != nil {
		return nil, nil, err
	}
	if len(fields) == 2 {
		for _, order := range [2][2]int{{0, 1}, {1, 0}} {
			s, p := fields[order[0]], fields[order[1]]
			if s.name == "schema" && p.name == "payload" && (isNull(s.raw) || s.raw[0] == '{') {
				return p.raw, s.raw, nil
			}
		}
	}
	return raw, nil, nil
}

// jsonColumn is a column of a JSON-decoded table and how to read its values.
type jsonColumn struct {
	col  change.Column
	conv func(raw json.RawMessage) (any, error) // never called with null
}

func (d *Decoder) decodeJSON(topic string, key, value []byte) (*change.Event, error) {
	var before, after, source, op, tsMs, toast, schemaRaw, payload, status, ddl json.RawMessage
	read := func(raw []byte) error {
		fields, err := splitObject(raw)
		if err != nil {
			return err
		}
		for _, f := range fields {
			switch f.name {
			case "before":
				before = f.raw
			case "after":
				after = f.raw
			case "source":
				source = f.raw
			case "op":
				op = f.raw
			case "ts_ms":
				tsMs = f.raw
			case "unchanged_toast":
				toast = f.raw
			case "schema":
				schemaRaw = f.raw
			case "payload":
				payload = f.raw
			case "status":
				status = f.raw
			case "ddl":
				ddl = f.raw
			}
		}
		return nil
	}
	if err := read(value); err != nil {
		return nil, err
	}
	if op == nil && payload != nil {
		if isNull(payload) {
			return nil, nil // a wrapped tombstone
		}
		if err := read(payload); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
	} else {
		schemaRaw = nil
	}
	if op == nil && isControlJSON(status, ddl, tsMs, before, after, source) {
		return nil, nil
	}
	if op == nil {
		return nil, errors.New(`no "op": not a change event envelope: ` + flatRowHint)
	}
	ops, err := jsonString(op)
	if err != nil {
		return nil, fmt.Errorf("op: %w", err)
	}
	ev := &change.Event{Op: change.Op(ops)}
	switch ev.Op {
	case change.OpRead, change.OpCreate, change.OpUpdate, change.OpDelete, change.OpTruncate:
	case opMessage:
		return nil, nil
	default:
		return nil, fmt.Errorf("unsupported op %q", ops)
	}
	if ev.TsMs, err = jsonInt(tsMs); err != nil {
		return nil, fmt.Errorf("ts_ms: %w", err)
	}
	if !isNull(toast) && string(toast) != "[]" {
		if err := json.Unmarshal(toast, &ev.UnchangedToast); err != nil {
			return nil, fmt.Errorf("unchanged_toast: %w", err)
		}
		if len(ev.UnchangedToast) == 0 {
			ev.UnchangedToast = nil
		}
	}
	if err := decodeJSONSource(source, &ev.Source); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	beforeFields, err := splitObject(before)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	afterFields, err := splitObject(after)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}

	var cols []jsonColumn
	var envName string
	guessed := isNull(schemaRaw)
	if !guessed {
		cs, err := d.connectSchema(schemaRaw, false)
		if err != nil {
			return nil, err
		}
		envName, cols = cs.name, cs.cols
	}
	if cols == nil {
		guessed = true
		if cols, err = inferColumns(afterFields, beforeFields); err != nil {
			return nil, err
		}
	} else {
		cols = append([]jsonColumn(nil), cols...) // markKeys writes to them
	}
	if err := markKeys(cols, key); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}

	schema, table := ev.Source.Schema, ev.Source.Table
	switch {
	case schema == "" && table == "":
		schema, table = namesFrom(envName, topic)
	case schema == "":
		schema = ev.Source.DB // MySQL's source block: its database is the schema
	}
	ev.Table = d.jsonTable("", schema, table, cols)

	ph := rowPlaceholder{ph: d.cfg.ph, guessed: guessed}
	if ev.Before, err = jsonRow(cols, beforeFields, before, ph); err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	if ev.After, err = jsonRow(cols, afterFields, after, ph); err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	return ev, nil
}

// parsedConnectSchema is what decoding needs of a Connect envelope schema.
type parsedConnectSchema struct {
	name string
	cols []jsonColumn // nil when the schema has no before/after struct
}

// connectSchema parses a Connect envelope schema, or with row the schema of a bare row (a
// struct of columns); Debezium repeats the same one in every message, so parsed schemas are
// cached by their text.
func (d *Decoder) connectSchema(raw json.RawMessage, row bool) (*parsedConnectSchema, error) {
	cacheKey := string(raw)
	if row {
		cacheKey = "row\x00" + cacheKey
	}
	if v, ok := d.connectSchemas.Load(cacheKey); ok {
		return v.(*parsedConnectSchema), nil
	}
	var cs connectSchema
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	p := &parsedConnectSchema{name: cs.Name}
	var err error
	if row {
		p.cols, err = connectRowColumns(&cs)
	} else {
		p.cols, err = connectEnvelopeColumns(&cs)
	}
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	if d.connectSchemaCount.Add(1) > maxJSONTables {
		d.connectSchemas.Clear()
		d.connectSchemaCount.Store(0)
	}
	d.connectSchemas.Store(cacheKey, p)
	return p, nil
}

// connectRowColumns maps the schema of a bare row, a struct of columns.
func connectRowColumns(cs *connectSchema) ([]jsonColumn, error) {
	if cs.Type != "struct" {
		return nil, fmt.Errorf("a row's schema is %q, want a struct", cs.Type)
	}
	return connectColumns(cs.Fields)
}

// connectEnvelopeColumns maps the struct of an envelope's before or after (nil when it has
// neither).
func connectEnvelopeColumns(cs *connectSchema) ([]jsonColumn, error) {
	for i := range cs.Fields {
		f := &cs.Fields[i]
		if (f.Field == "after" || f.Field == "before") && f.Type == "struct" {
			cols, err := connectColumns(f.Fields)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Field, err)
			}
			return cols, nil
		}
	}
	return nil, nil
}

func (d *Decoder) decodeJSONKey(topic string, key []byte) (*change.Table, change.Row, error) {
	payload, schemaRaw, err := unwrap(key)
	if err != nil {
		return nil, nil, err
	}
	fields, err := splitObject(payload)
	if err != nil {
		return nil, nil, err
	}
	var cols []jsonColumn
	var name string
	if !isNull(schemaRaw) {
		var cs connectSchema
		if err := json.Unmarshal(schemaRaw, &cs); err != nil {
			return nil, nil, fmt.Errorf("schema: %w", err)
		}
		name = cs.Name
		if cols, err = connectColumns(cs.Fields); err != nil {
			return nil, nil, fmt.Errorf("schema: %w", err)
		}
	} else if cols, err = inferColumns(fields, nil); err != nil {
		return nil, nil, err
	}
	schema, table := namesFrom(name, topic)
	for i := range cols {
		cols[i].col.Key = true
	}
	row, err := jsonRow(cols, fields, payload, rowPlaceholder{})
	if err != nil {
		return nil, nil, err
	}
	return d.jsonTable("key", schema, table, cols), row, nil
}

// namesFrom takes schema and table from a Debezium record name "<prefix>.<schema>.<table>.<Record>"
// or, failing that, a topic "<prefix>.<schema>.<table>".
func namesFrom(recordName, topic string) (schema, table string) {
	if parts := strings.Split(recordName, "."); len(parts) >= 4 {
		return parts[len(parts)-3], parts[len(parts)-2]
	}
	if parts := strings.Split(topic, "."); len(parts) >= 3 {
		return parts[len(parts)-2], parts[len(parts)-1]
	}
	return "", ""
}

func decodeJSONSource(raw json.RawMessage, src *change.Source) error {
	fields, err := splitObject(raw)
	if err != nil {
		return err
	}
	for _, f := range fields {
		var err error
		switch f.name {
		case "connector":
			src.Connector, err = jsonString(f.raw)
		case "name":
			src.Name, err = jsonString(f.raw)
		case "db":
			src.DB, err = jsonString(f.raw)
		case "schema":
			src.Schema, err = jsonString(f.raw)
		case "table":
			src.Table, err = jsonString(f.raw)
		case "txId":
			src.TxID, err = jsonInt(f.raw)
		case "lsn":
			src.LSN, err = jsonInt(f.raw)
		case "ts_ms":
			src.TsMs, err = jsonInt(f.raw)
		case "snapshot": // a string, or a boolean in old Debezium versions
			switch string(f.raw) {
			case "true", "false":
				src.Snapshot = string(f.raw)
			default:
				src.Snapshot, err = jsonString(f.raw)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// markKeys sets Key on the columns named in the key's JSON object (wrapped or not).
func markKeys(cols []jsonColumn, key []byte) error {
	if !isJSON(key) {
		return nil
	}
	payload, _, err := unwrap(key)
	if err != nil {
		return err
	}
	fields, err := splitObject(payload)
	if err != nil {
		return err
	}
	for _, f := range fields {
		for i := range cols {
			if cols[i].col.Name == f.name {
				cols[i].col.Key = true
			}
		}
	}
	return nil
}

// jsonTable returns the shared table of a JSON-decoded shape, building it only when it is new.
func (d *Decoder) jsonTable(kind, schema, name string, cols []jsonColumn) *change.Table {
	sig := make([]byte, 0, 64+24*len(cols))
	sig = append(sig, kind...)
	sig = append(sig, 0)
	sig = append(sig, schema...)
	sig = append(sig, 0)
	sig = append(sig, name...)
	for i := range cols {
		c := &cols[i].col
		sig = append(sig, 0)
		sig = append(sig, c.Name...)
		sig = append(sig, 1)
		sig = strconv.AppendInt(sig, int64(c.Kind), 10)
		sig = append(sig, 1)
		sig = strconv.AppendInt(sig, int64(c.Elem), 10)
		sig = append(sig, 1)
		sig = append(sig, c.PGType...)
		sig = append(sig, 1)
		sig = strconv.AppendUint(sig, uint64(c.TypeOID), 10)
		if c.Key {
			sig = append(sig, 1, 'k')
		}
	}
	d.tablesMu.Lock()
	defer d.tablesMu.Unlock()
	if t, ok := d.tables[string(sig)]; ok {
		return t
	}
	t := &change.Table{Schema: schema, Name: name}
	for i := range cols {
		t.Columns = append(t.Columns, cols[i].col)
	}
	if len(d.tables) >= maxJSONTables {
		clear(d.tables) // shapes vary with NULLs in schemaless JSON; stay bounded
	}
	d.tables[string(sig)] = t
	return t
}

// rowPlaceholder is what jsonRow needs to spot Debezium's unavailable-value placeholder: the
// placeholder (nil: none) and whether the columns' kinds were guessed from the values.
type rowPlaceholder struct {
	ph      *placeholder
	guessed bool
}

// is reports whether the raw value of column c is the placeholder.
func (p rowPlaceholder) is(c *change.Column, raw json.RawMessage) bool {
	if p.ph == nil {
		return false
	}
	if c.Kind == change.KindArray {
		return p.ph.isJSONArray(raw, c.Elem, p.guessed)
	}
	return p.ph.isJSON(raw, c.Kind, p.guessed)
}

func jsonRow(cols []jsonColumn, fields []jsonField, raw json.RawMessage, ph rowPlaceholder) (change.Row, error) {
	if isNull(raw) {
		return nil, nil
	}
	row := make(change.Row, len(fields))
	for fi, f := range fields {
		var c *jsonColumn
		if fi < len(cols) && cols[fi].col.Name == f.name {
			c = &cols[fi] // the usual case: members in column order
		} else {
			for i := range cols {
				if cols[i].col.Name == f.name {
					c = &cols[i]
					break
				}
			}
		}
		if c == nil {
			return nil, fmt.Errorf("column %q is not in the schema", f.name)
		}
		if isNull(f.raw) {
			row[f.name] = nil
			continue
		}
		if ph.is(&c.col, f.raw) {
			row[f.name] = unavailable{} // before its octets are read as the column's type
			continue
		}
		v, err := c.conv(f.raw)
		if err != nil {
			return nil, fmt.Errorf("column %q (%s): %w", f.name, c.col.Kind, err)
		}
		row[f.name] = v
	}
	return row, nil
}

// connectColumns maps the fields of a Connect struct schema to columns.
func connectColumns(fields []connectSchema) ([]jsonColumn, error) {
	cols := make([]jsonColumn, 0, len(fields))
	for i := range fields {
		f := &fields[i]
		c := jsonColumn{col: change.Column{Name: f.Field}}
		if t, ok := f.Parameters["__debezium.source.column.type"].(string); ok {
			c.col.PGType = strings.ToLower(t)
		}
		if f.Type == "array" {
			if f.Items == nil {
				return nil, fmt.Errorf("field %q: array without items", f.Field)
			}
			ek, econv, err := connectScalar(f.Items)
			if err != nil {
				return nil, fmt.Errorf("field %q items: %w", f.Field, err)
			}
			c.col.Kind, c.col.Elem = change.KindArray, ek
			c.conv = arrayConv(econv)
		} else {
			k, cv, err := connectScalar(f)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.Field, err)
			}
			c.col.Kind, c.conv = k, cv
			if k == change.KindString && isDecimalType(c.col.PGType) {
				c.col.Kind = change.KindNumeric // decimal.handling.mode=string: the text is exact
			}
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// connectScalar maps a non-array Connect schema to a kind and the conversion of its JSON values.
func connectScalar(s *connectSchema) (change.Kind, func(json.RawMessage) (any, error), error) {
	k, c, err := semantic(s.Type, s.Name, s.Parameters)
	if err != nil {
		return 0, nil, err
	}
	ctype := s.Type
	numericDecimal := s.Name == decimalName
	return k, func(raw json.RawMessage) (any, error) {
		if numericDecimal && len(raw) > 0 && raw[0] != '"' {
			return decimalNumber(raw, s.Parameters) // JsonConverter's decimal.format=NUMERIC
		}
		v, err := jsonBase(ctype, raw)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return v, nil
		}
		return c(v)
	}, nil
}

// decimalNumber reads a Decimal that JsonConverter wrote as a JSON number (decimal.format=NUMERIC)
// as the decimal text at the schema's scale.
func decimalNumber(raw json.RawMessage, params map[string]any) (any, error) {
	scale, err := paramInt(params, "scale")
	if err == nil {
		err = checkDecimal(raw, int64(scale))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", decimalName, err)
	}
	// big.Rat computes 10^exponent: bound it as scales are bounded, or "1e999999999" would be
	// a gigabyte of digits.
	if i := bytes.IndexAny(raw, "eE"); i >= 0 {
		exp, err := strconv.Atoi(string(raw[i+1:]))
		if err != nil || exp < -maxDecimalScale || exp > maxDecimalScale {
			return nil, fmt.Errorf("%s: exponent of %s is out of range", decimalName, raw)
		}
	}
	r, ok := new(big.Rat).SetString(string(raw))
	if !ok {
		return nil, fmt.Errorf("%s: %s is not a number", decimalName, raw)
	}
	return r.FloatString(max(scale, 0)), nil
}

// jsonBase reads a JSON value in the base Go form of a Connect type.
func jsonBase(ctype string, raw json.RawMessage) (any, error) {
	switch ctype {
	case "int8", "int16", "int32":
		i, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil {
			return nil, err
		}
		return int32(i), nil
	case "int64":
		return strconv.ParseInt(string(raw), 10, 64)
	case "float", "float32", "double", "float64":
		bits := 64
		if ctype == "float" || ctype == "float32" {
			bits = 32
		}
		f, err := jsonFloat(raw, bits)
		if err != nil {
			return nil, err
		}
		if bits == 32 {
			return float32(f), nil
		}
		return f, nil
	case "boolean":
		return jsonBool(raw)
	case "string":
		return jsonString(raw)
	case "bytes":
		s, err := jsonString(raw)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	case "struct":
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if n, ok := v.(json.Number); ok {
				if i, err := n.Int64(); err == nil {
					m[k] = i
				}
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("unsupported type %q", ctype)
}

// jsonFloat reads a JSON number, or one of the strings "NaN", "Infinity", "-Infinity".
func jsonFloat(raw json.RawMessage, bits int) (float64, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		return 0, fmt.Errorf("want a number, got %q", s)
	}
	return strconv.ParseFloat(string(raw), bits)
}

// Kind inference for JSON without a schema.

// jsonKindOf infers the kind of a JSON value: ok is false for null.
func jsonKindOf(raw json.RawMessage) (k change.Kind, ok bool) {
	switch raw[0] {
	case 'n':
		return 0, false
	case 't', 'f':
		return change.KindBool, true
	case '"':
		return change.KindString, true
	case '[':
		return change.KindArray, true
	case '{':
		return change.KindJSON, true
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return change.KindInt64, true
	}
	return change.KindFloat64, true
}

// mergeKind combines the kinds seen for one column; a conflict gives KindJSON (the raw text).
func mergeKind(have change.Kind, seen bool, k change.Kind) change.Kind {
	switch {
	case !seen || have == k:
		return k
	case have == change.KindInt64 && k == change.KindFloat64, have == change.KindFloat64 && k == change.KindInt64:
		return change.KindFloat64
	}
	return change.KindJSON
}

// inferColumns builds columns from the members of after, then those only in before, with kinds
// inferred from the values: numbers int64 (or float64 when any value has a fraction or exponent),
// strings, booleans, arrays of those, and objects (or conflicting types) as json text. A column
// that is NULL everywhere is a string column.
func inferColumns(rows ...[]jsonField) ([]jsonColumn, error) {
	type acc struct{ seen, elemSeen, elemConflict bool }
	n := 0
	for _, r := range rows {
		n = max(n, len(r))
	}
	cols := make([]jsonColumn, 0, n)
	accs := make([]acc, 0, n)
	for _, row := range rows {
		for fi, f := range row {
			ci := -1
			if fi < len(cols) && cols[fi].col.Name == f.name {
				ci = fi
			} else {
				for i := range cols {
					if cols[i].col.Name == f.name {
						ci = i
						break
					}
				}
			}
			if ci < 0 {
				ci = len(cols)
				cols = append(cols, jsonColumn{col: change.Column{Name: f.name}})
				accs = append(accs, acc{})
			}
			k, ok := jsonKindOf(f.raw)
			if !ok {
				continue
			}
			c, a := &cols[ci].col, &accs[ci]
			c.Kind = mergeKind(c.Kind, a.seen, k)
			a.seen = true
			if k != change.KindArray || c.Kind != change.KindArray {
				continue
			}
			elems, err := splitArray(f.raw)
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", f.name, err)
			}
			for _, e := range elems {
				if ek, ok := jsonKindOf(e); ok {
					if ek == change.KindArray {
						a.elemConflict = true
					}
					c.Elem = mergeKind(c.Elem, a.elemSeen, ek)
					a.elemSeen = true
				}
			}
		}
	}
	for i := range cols {
		c, a := &cols[i], &accs[i]
		if c.col.Kind != change.KindArray {
			c.col.Elem = 0
			c.conv = inferredConv(c.col.Kind)
			continue
		}
		if !a.elemSeen {
			c.col.Elem = change.KindString
		}
		if a.elemConflict {
			c.col.Elem = change.KindJSON
		}
		elem := inferredConv(c.col.Elem)
		c.conv = arrayConv(elem)
	}
	return cols, nil
}

func inferredConv(k change.Kind) func(json.RawMessage) (any, error) {
	switch k {
	case change.KindInt64:
		return func(raw json.RawMessage) (any, error) { return jsonBase("int64", raw) }
	case change.KindFloat64:
		return func(raw json.RawMessage) (any, error) { return jsonBase("float64", raw) }
	case change.KindBool:
		return func(raw json.RawMessage) (any, error) { return jsonBase("boolean", raw) }
	case change.KindString:
		return func(raw json.RawMessage) (any, error) { return jsonBase("string", raw) }
	}
	return func(raw json.RawMessage) (any, error) { // KindJSON: the value's JSON text, compacted
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, err
		}
		return b.String(), nil
	}
}

// arrayConv converts a JSON array element by element; null elements stay nil.
func arrayConv(elem func(json.RawMessage) (any, error)) func(json.RawMessage) (any, error) {
	return func(raw json.RawMessage) (any, error) {
		elems, err := splitArray(raw)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(elems))
		for i, e := range elems {
			if isNull(e) {
				continue
			}
			v, err := elem(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = v
		}
		return out, nil
	}
}

// isDecimalType reports whether a source column type (Debezium's __debezium.source.column.type,
// when column.propagate.source.type is set) is a decimal type.
func isDecimalType(t string) bool {
	return t == "numeric" || t == "decimal" || strings.HasPrefix(t, "numeric(") || strings.HasPrefix(t, "decimal(")
}

// isControlJSON reports whether the members of a JSON value without "op" are those of a Debezium
// record that is no row change: transaction metadata ({"status":"BEGIN"|"END","id":…}), a
// schema change of the MySQL connector ({"ddl":…,"tableChanges":…}) or a heartbeat ({"ts_ms":…}
// alone).
func isControlJSON(status, ddl, tsMs, before, after, source json.RawMessage) bool {
	if status != nil || ddl != nil {
		return true
	}
	return tsMs != nil && before == nil && after == nil && source == nil
}
