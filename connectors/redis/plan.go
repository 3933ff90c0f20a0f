package redis

import (
	"fmt"
	"sort"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// plan is what one record does to Redis.
type plan struct {
	index int    // in Batch.Records
	key   string // the Redis key
	del   bool   // DEL the key
	// hash mode: HSET pairs and fields to HDEL.
	hset []any
	hdel []string
	// json mode: the fields to merge, then the merged document to SET.
	doc   jsonDoc
	value string
}

// planRecord turns a record into its plan; errors concern this record alone.
func (c *connector) planRecord(r *sink.Record, index int) (plan, error) {
	key, err := c.cfg.key.render(r.Key)
	if err != nil {
		return plan{}, fmt.Errorf("redis key: %w", err)
	}
	p := plan{index: index, key: key}
	switch {
	case r.Op == sink.OpDelete:
		p.del = true
		return p, nil
	case r.Op != sink.OpUpsert:
		return plan{}, fmt.Errorf("redis: unsupported operation %s", r.Op)
	case c.cfg.mode == ModeJSON:
		return p, p.encodeJSON(r.FieldOrder, r.Fields)
	}
	return p, p.encodeHash(r.FieldOrder, r.Fields)
}

// encodeHash fills the HSET pairs and HDEL fields of an upsert.
func (p *plan) encodeHash(order []string, fields map[string]any) error {
	for _, name := range orderedNames(order, fields) {
		v := fields[name]
		if v == nil {
			p.hdel = append(p.hdel, name)
			continue
		}
		s, err := formatValue(v)
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		p.hset = append(p.hset, name, s)
	}
	return nil
}

// encodeJSON fills the fields an upsert merges into the stored object; nil becomes null.
func (p *plan) encodeJSON(order []string, fields map[string]any) error {
	p.doc = make(jsonDoc, len(fields))
	for _, name := range orderedNames(order, fields) {
		raw, err := jsonValue(fields[name])
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		p.doc[name] = raw
	}
	return nil
}

// orderedNames lists the names of m: first in the given order, then the rest sorted.
func orderedNames(order []string, m map[string]any) []string {
	names := make([]string, 0, len(m))
	seen := make(map[string]bool, len(m))
	for _, n := range order {
		if _, ok := m[n]; ok && !seen[n] {
			names = append(names, n)
			seen[n] = true
		}
	}
	var rest []string
	for n := range m {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}
