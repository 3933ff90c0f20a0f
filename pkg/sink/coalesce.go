package sink

// Coalesce: one state per key in a batch, so that a statement touches each row once.

import (
	"fmt"
	"strconv"
	"strings"
)

// coalesce keeps each key's last state, in the order keys first appear, so a batch touches a row
// once (PostgreSQL rejects ON CONFLICT DO UPDATE touching a row twice in one statement). A delete
// stays a delete; an upsert lacking unchanged-TOAST fields inherits them from an earlier upsert
// of the same batch. A truncate ends a segment: nothing is coalesced across it. A batch without
// repeated keys (a backfill, most streams) is returned as it is.
func coalesce(in []Record) []Record {
	seen := make(map[recordKey]int, len(in))
	dup := false
	for _, r := range in {
		if r.Op == OpTruncate {
			clear(seen)
			continue
		}
		k := keyOf(r)
		if _, dup = seen[k]; dup {
			break
		}
		seen[k] = 0
	}
	if !dup {
		return in
	}
	clear(seen)
	out := make([]Record, 0, len(in))
	for _, r := range in {
		if r.Op == OpTruncate {
			out = append(out, r)
			clear(seen)
			continue
		}
		k := keyOf(r)
		i, ok := seen[k]
		if !ok {
			seen[k] = len(out)
			out = append(out, r)
			continue
		}
		if r.Op == OpUpsert && out[i].Op == OpUpsert {
			r = inherit(r, out[i])
		}
		out[i] = r
	}
	return out
}

// recordKey identifies a record's key within a batch. Keys of up to four strings, integers and
// booleans are compared as they are, without allocating; others by their spelling (keyString).
type recordKey struct {
	kinds [4]byte // 's' string, 'i' integer or boolean
	strs  [4]string
	ints  [4]int64
	str   string
}

func keyOf(r Record) recordKey {
	var k recordKey
	if len(r.KeyOrder) > len(k.kinds) {
		return recordKey{str: keyString(r)}
	}
	for i, name := range r.KeyOrder {
		switch v := r.Key[name].(type) {
		case string:
			k.kinds[i], k.strs[i] = 's', v
		case int64:
			k.kinds[i], k.ints[i] = 'i', v
		case int32: // the same key whether a column is int or bigint
			k.kinds[i], k.ints[i] = 'i', int64(v)
		case int:
			k.kinds[i], k.ints[i] = 'i', int64(v)
		case bool:
			k.kinds[i] = 'b'
			if v {
				k.ints[i] = 1
			}
		default:
			return recordKey{str: keyString(r)}
		}
	}
	return k
}

// inherit fills the fields r lacks from prev: a field absent because its TOAST value did not
// change has prev's value.
func inherit(r, prev Record) Record {
	if len(r.Fields) >= len(prev.Fields) {
		return r
	}
	merged := make(map[string]any, len(prev.Fields))
	for k, v := range prev.Fields {
		merged[k] = v
	}
	for k, v := range r.Fields {
		merged[k] = v
	}
	r.Fields, r.FieldOrder = merged, prev.FieldOrder
	return r
}

// keyString identifies a record's key within a batch; the common key types skip fmt, which is
// measurable on the hot path.
func keyString(r Record) string {
	var b strings.Builder
	for _, k := range r.KeyOrder {
		switch v := r.Key[k].(type) {
		case string:
			b.WriteString(v)
		case int32:
			b.WriteString(strconv.FormatInt(int64(v), 10))
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		default:
			fmt.Fprintf(&b, "%T:%v", v, v)
		}
		b.WriteByte(0)
	}
	return b.String()
}
