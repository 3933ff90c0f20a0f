package sftest

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
)

// table holds one sObject's records by id, and an index by external id field and value.
type table struct {
	records map[string]map[string]any
	index   map[string]map[string]string // lower-case field → value → id
}

// tableFor returns the sObject's table; s.mu is held.
func (s *Server) tableFor(sobject string) *table {
	t := s.tables[sobject]
	if t == nil {
		t = &table{records: map[string]map[string]any{}, index: map[string]map[string]string{}}
		s.tables[sobject] = t
	}
	return t
}

// byExternalID returns the index of field, building it on first use.
func (t *table) byExternalID(field string) map[string]string {
	key := strings.ToLower(field)
	idx := t.index[key]
	if idx == nil {
		idx = map[string]string{}
		for id, rec := range t.records {
			if v, ok := lookup(rec, field); ok && v != nil {
				idx[text(v)] = id
			}
		}
		t.index[key] = idx
	}
	return idx
}

// lookup finds a field case-insensitively, as Salesforce field names are.
func lookup(rec map[string]any, field string) (any, bool) {
	for k, v := range rec {
		if strings.EqualFold(k, field) {
			return v, true
		}
	}
	return nil, false
}

// upsert merges fields (nil clears a field) into the record whose field has value ext, or
// creates it, then validates it; when dryRun or invalid nothing changes. s.mu is held.
func (s *Server) upsert(sobject, field, ext string, fields map[string]any, dryRun bool) (string, bool, *Error) {
	t := s.tableFor(sobject)
	idx := t.byExternalID(field)
	id, exists := idx[ext]
	merged := map[string]any{}
	if exists {
		merged = maps.Clone(t.records[id])
	}
	for k, v := range fields {
		if v == nil {
			delete(merged, k)
		} else {
			merged[k] = v
		}
	}
	merged[field] = ext
	if e := s.validate(sobject, merged); e != nil || dryRun {
		return id, !exists, e
	}
	if !exists {
		id = s.newID("a00")
	}
	merged["Id"] = id
	t.records[id] = merged
	for f, other := range t.index {
		if v, ok := lookup(merged, f); ok && v != nil {
			other[text(v)] = id
		}
	}
	return id, !exists, nil
}

// validate applies Config.Required and Config.Validate to a record.
func (s *Server) validate(sobject string, rec map[string]any) *Error {
	var missing []string
	for _, f := range s.cfg.Required[sobject] {
		if v, ok := lookup(rec, f); !ok || v == nil || v == "" {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return &Error{StatusCode: CodeRequiredField, Message: "Required fields are missing: [" + strings.Join(missing, ", ") + "]",
			Fields: missing}
	}
	if s.cfg.Validate != nil {
		return s.cfg.Validate(sobject, rec)
	}
	return nil
}

// remove deletes the record whose field has value ext; s.mu is held.
func (s *Server) remove(sobject, field, ext string) bool {
	t := s.tableFor(sobject)
	id, ok := t.byExternalID(field)[ext]
	if !ok {
		return false
	}
	rec := t.records[id]
	delete(t.records, id)
	for f, idx := range t.index {
		if v, ok := lookup(rec, f); ok && v != nil {
			delete(idx, text(v))
		}
	}
	return true
}

// Record returns a copy of the record of sobject whose field has value ext. Values are as
// received: strings and json.Number from sObject Collections, strings from Bulk API CSV.
func (s *Server) Record(sobject, field, ext string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tableFor(sobject)
	id, ok := t.byExternalID(field)[ext]
	if !ok {
		return nil, false
	}
	return maps.Clone(t.records[id]), true
}

// Count returns how many records sobject has.
func (s *Server) Count(sobject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tableFor(sobject).records)
}

// text renders a stored value as the text it is indexed and compared by.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}
