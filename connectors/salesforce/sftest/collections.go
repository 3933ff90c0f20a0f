package sftest

import (
	"encoding/json"
	"net/http"
	"strings"
)

// upsertResult is one UpsertResult of an sObject Collections upsert.
type upsertResult struct {
	ID      string  `json:"id,omitempty"`
	Success bool    `json:"success"`
	Errors  []Error `json:"errors"`
	Created bool    `json:"created"`
}

// upsertCollection serves PATCH /composite/sobjects/{sobject}/{field}.
func (s *Server) upsertCollection(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AllOrNone bool             `json:"allOrNone"`
		Records   []map[string]any `json:"records"`
	}
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "unreadable request body: "+err.Error())
		return
	}
	if len(body.Records) > CollectionLimit {
		writeError(w, http.StatusBadRequest, CodeExceededLimit, "record limit reached. cannot submit more than 200 records into this call")
		return
	}
	sobject, field := r.PathValue("sobject"), r.PathValue("field")
	s.mu.Lock()
	defer s.mu.Unlock()
	results := s.upsertAll(sobject, field, body.Records, body.AllOrNone)
	s.stats.Collections++
	s.stats.CollectionRecords += len(body.Records)
	s.last = body.Records
	writeJSON(w, http.StatusOK, results)
}

// upsertAll upserts records in order; with allOrNone a failure rolls every record back. s.mu is held.
func (s *Server) upsertAll(sobject, field string, records []map[string]any, allOrNone bool) []upsertResult {
	seen := map[string]int{}
	for _, rec := range records {
		if v, ok := lookup(rec, field); ok && v != nil {
			seen[text(v)]++
		}
	}
	results := make([]upsertResult, len(records))
	failed := false
	for i, rec := range records {
		results[i] = s.upsertOne(sobject, field, rec, seen, allOrNone)
		failed = failed || !results[i].Success
	}
	if !allOrNone {
		return results
	}
	for i, rec := range records {
		switch {
		case failed && results[i].Success:
			results[i] = upsertResult{Errors: []Error{{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
				Message: "Record rolled back because not all records were valid and the request was using AllOrNone header"}}}
		case !failed:
			results[i] = s.upsertOne(sobject, field, rec, seen, false)
		}
	}
	return results
}

// upsertOne checks and applies (unless dryRun) one record of a collection.
func (s *Server) upsertOne(sobject, field string, rec map[string]any, seen map[string]int, dryRun bool) upsertResult {
	attrs, _ := rec["attributes"].(map[string]any)
	if typ, _ := attrs["type"].(string); !strings.EqualFold(typ, sobject) {
		return failure("INVALID_TYPE", "attributes.type must be "+sobject)
	}
	v, ok := lookup(rec, field)
	if !ok || v == nil || text(v) == "" {
		return failure("MISSING_ARGUMENT", field+" not specified")
	}
	ext := text(v)
	if seen[ext] > 1 {
		return failure(CodeDuplicateExtID, "Duplicate external id specified: "+ext)
	}
	fields := map[string]any{}
	for k, val := range rec {
		if k != "attributes" && !strings.EqualFold(k, field) {
			fields[k] = val
		}
	}
	id, created, e := s.upsert(sobject, field, ext, fields, dryRun)
	if e != nil {
		return upsertResult{Errors: []Error{*e}}
	}
	return upsertResult{ID: id, Success: true, Errors: []Error{}, Created: created}
}

func failure(code, message string) upsertResult {
	return upsertResult{Errors: []Error{{StatusCode: code, Message: message, Fields: []string{}}}}
}

// deleteByExternalID serves DELETE /sobjects/{sobject}/{field}/{value}.
func (s *Server) deleteByExternalID(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.remove(r.PathValue("sobject"), r.PathValue("field"), r.PathValue("value")) {
		writeError(w, http.StatusNotFound, CodeNotFound, "The requested resource does not exist")
		return
	}
	s.stats.Deletes++
	w.WriteHeader(http.StatusNoContent)
}
