package postgres

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// The keys of a postgres sink's `with` block.
const (
	keyURL              = "url"
	keyTable            = "table"
	keyAutoCreate       = "auto_create"
	keyOffsetsTable     = "offsets_table"
	keyMaxConns         = "max_conns"
	keySoftDeleteColumn = "soft_delete_column" // read by the runtime: on_delete: soft_delete
	keyCopyInserts      = "copy_inserts"
)

var withKeys = []string{keyURL, keyTable, keyAutoCreate, keyOffsetsTable, keyMaxConns, keySoftDeleteColumn, keyCopyInserts}

// DefaultOffsetsTable is the offsets table's name when with.offsets_table is not set; it lives in
// the target table's schema.
const DefaultOffsetsTable = "backflow_offsets"

// DefaultMaxConns is the connection pool size when with.max_conns is not set.
const DefaultMaxConns = 4

// configError is a problem with the sink's configuration, named by its path in the sink.
type configError struct {
	path string // "with.url", "key[1]", …
	msg  string
}

func (e *configError) Error() string { return e.path + ": " + e.msg }

// settings is the validated `with` block.
type settings struct {
	url                  string
	schema, table        string
	autoCreate           bool
	copyInserts          bool // batches of new rows go by COPY (see copyInserts)
	offSchema, offTable  string
	maxConns             int32
	key                  []string
	softDelete, sinkName string
	version              string // the sink's version_column: last write wins by source LSN
}

// parseSettings validates the parameters, reporting every problem at once.
func parseSettings(p sink.Params) (*settings, error) {
	s := &settings{maxConns: DefaultMaxConns, copyInserts: true, key: p.Key, softDelete: p.SoftDeleteColumn, sinkName: p.Sink, version: p.VersionColumn}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &configError{path: path, msg: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(p.With))
	for k := range p.With {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(withKeys, k) {
			add("with."+k, "unknown key; expected one of %s", strings.Join(withKeys, ", "))
		}
	}

	if url, ok, err := stringParam(p.With, keyURL); err != nil {
		errs = append(errs, err)
	} else if !ok || strings.TrimSpace(url) == "" {
		add("with."+keyURL, "required; expected a postgres:// URL or a key=value DSN of the target database")
	} else {
		s.url = url
	}

	if table, ok, err := stringParam(p.With, keyTable); err != nil {
		errs = append(errs, err)
	} else if !ok || table == "" {
		add("with."+keyTable, `required; expected the target table as "schema.table" or "table" (schema public)`)
	} else if schema, name, err := parseTableName(table); err != nil {
		add("with."+keyTable, "%v", err)
	} else {
		if schema == "" {
			schema = "public"
		}
		s.schema, s.table = schema, name
	}

	if v, ok := p.With[keyAutoCreate]; ok {
		b, err := boolValue(v)
		if err != nil {
			add("with."+keyAutoCreate, "%v", err)
		}
		s.autoCreate = b
	}

	if v, ok := p.With[keyCopyInserts]; ok {
		b, err := boolValue(v)
		if err != nil {
			add("with."+keyCopyInserts, "%v", err)
		}
		s.copyInserts = b
	}

	s.offSchema, s.offTable = s.schema, DefaultOffsetsTable
	if name, ok, err := stringParam(p.With, keyOffsetsTable); err != nil {
		errs = append(errs, err)
	} else if ok {
		schema, table, err := parseTableName(name)
		if err != nil {
			add("with."+keyOffsetsTable, "%v", err)
		} else {
			if schema == "" {
				schema = s.schema
			}
			s.offSchema, s.offTable = schema, table
		}
	}

	if v, ok := p.With[keyMaxConns]; ok {
		n, err := intValue(v)
		switch {
		case err != nil:
			add("with."+keyMaxConns, "%v", err)
		case n < 1 || n > math.MaxInt32:
			add("with."+keyMaxConns, "expected a positive number of connections, got %d", n)
		default:
			s.maxConns = int32(n)
		}
	}
	if _, _, err := stringParam(p.With, keySoftDeleteColumn); err != nil {
		errs = append(errs, err)
	}

	if len(p.Key) == 0 {
		add("key", "required; expected the target's identity fields (its primary key columns), e.g. [id]")
	}
	seen := map[string]bool{}
	for i, k := range p.Key {
		switch {
		case k == "":
			add(fmt.Sprintf("key[%d]", i), "expected a field name")
		case seen[k]:
			add(fmt.Sprintf("key[%d]", i), "field %q is listed twice", k)
		}
		seen[k] = true
	}
	if s.schema != "" && s.offSchema == s.schema && s.offTable == s.table {
		add("with."+keyOffsetsTable, "must differ from with.table")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func stringParam(with map[string]any, key string) (string, bool, error) {
	v, ok := with[key]
	if !ok || v == nil {
		return "", false, nil
	}
	s, isString := v.(string)
	if !isString {
		return "", true, &configError{path: "with." + key, msg: fmt.Sprintf("expected a string, got %T", v)}
	}
	return s, true, nil
}

// boolValue accepts a YAML boolean or its spelling as a string (after ${ENV} expansion).
func boolValue(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return false, fmt.Errorf("expected true or false, got %q", x)
		}
		return b, nil
	}
	return false, fmt.Errorf("expected true or false, got %T", v)
}

// intValue accepts the integer types YAML decoders produce, an integral float, or a string.
func intValue(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%d is too large", x)
		}
		return int64(x), nil
	case uint:
		return int64(x), nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, fmt.Errorf("expected a whole number, got %v", x)
		}
		return int64(x), nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("expected a whole number, got %q", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("expected a whole number, got %T", v)
}
