package hubspottest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxInputs is the most inputs an object batch request takes.
const MaxInputs = 100

// emailPattern is the stub's notion of a valid email address.
var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s.]+$`)

// upsertRequest is the body of a batch upsert.
type upsertRequest struct {
	Inputs []struct {
		ID         string         `json:"id"`
		IDProperty string         `json:"idProperty"`
		TraceID    string         `json:"objectWriteTraceId"`
		Properties map[string]any `json:"properties"`
	} `json:"inputs"`
}

// inputError is one input's validation failure.
type inputError struct {
	input   int
	message string
}

// upsert serves batch/upsert; s.mu is held.
func (s *Server) upsert(w http.ResponseWriter, objectType string, body []byte) {
	var req upsertRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "", "Invalid input JSON: "+err.Error())
		return
	}
	props, msg := s.checkBatch(&req)
	if msg != "" {
		s.fail(w, http.StatusBadRequest, "", msg)
		return
	}
	bad := validate(&req, props)
	if len(bad) > 0 && (s.opts.AllOrNothing || !allTraced(&req)) {
		s.failInputs(w, &req, bad)
		return
	}
	s.applyUpsert(w, objectType, &req, props, bad)
}

// checkBatch checks the batch's shape and returns its properties as strings, or a message.
func (s *Server) checkBatch(req *upsertRequest) ([]map[string]string, string) {
	if n := len(req.Inputs); n > MaxInputs {
		return nil, fmt.Sprintf("The batch size (%d) exceeds the maximum size (%d).", n, MaxInputs)
	}
	seen := map[string]bool{}
	props := make([]map[string]string, len(req.Inputs))
	for i, in := range req.Inputs {
		if in.IDProperty == "" || in.ID == "" {
			return nil, fmt.Sprintf("Input %d: id and idProperty are required for an upsert", i)
		}
		key := normalize(in.IDProperty, in.ID)
		if seen[key] {
			return nil, fmt.Sprintf("Duplicate IDs found in batch input: [%s]. IDs must be unique", in.ID)
		}
		seen[key] = true
		p, msg := stringProps(in.Properties)
		if msg != "" {
			return nil, msg
		}
		props[i] = p
	}
	return props, ""
}

// stringProps requires every property value to be a string (the connector's contract; HubSpot
// itself also takes numbers and booleans).
func stringProps(in map[string]any) (map[string]string, string) {
	out := make(map[string]string, len(in))
	for name, v := range in {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Sprintf("Property %q: expected a string value, got %T", name, v)
		}
		out[name] = s
	}
	return out, ""
}

// validate finds inputs with invalid email values.
func validate(req *upsertRequest, props []map[string]string) []inputError {
	var bad []inputError
	for i, in := range req.Inputs {
		email, ok := props[i]["email"]
		if in.IDProperty == "email" && !ok {
			email, ok = in.ID, true
		}
		if ok && email != "" && !emailPattern.MatchString(email) {
			detail, _ := json.Marshal([]map[string]any{{"isValid": false, "message": "Email address " + email + " is invalid", "error": "INVALID_EMAIL", "name": "email"}})
			bad = append(bad, inputError{input: i, message: "Property values were not valid: " + string(detail)})
		}
	}
	return bad
}

// allTraced reports whether every input carries an objectWriteTraceId (multi-status enabled).
func allTraced(req *upsertRequest) bool {
	for _, in := range req.Inputs {
		if in.TraceID == "" {
			return false
		}
	}
	return true
}

// failInputs answers 400 for the whole batch, naming the failing inputs' trace ids if any.
func (s *Server) failInputs(w http.ResponseWriter, req *upsertRequest, bad []inputError) {
	var traces []string
	for _, b := range bad {
		if t := req.Inputs[b.input].TraceID; t != "" {
			traces = append(traces, t)
		}
	}
	if len(traces) == 0 {
		s.fail(w, http.StatusBadRequest, "", bad[0].message)
		return
	}
	s.fail(w, http.StatusBadRequest, "", bad[0].message, map[string][]string{"objectWriteTraceId": traces})
}

// applyUpsert stores the valid inputs and answers 200, or 207 listing the invalid ones.
func (s *Server) applyUpsert(w http.ResponseWriter, objectType string, req *upsertRequest, props []map[string]string, bad []inputError) {
	started := time.Now()
	skip := map[int]string{}
	for _, b := range bad {
		skip[b.input] = b.message
	}
	results := make([]map[string]any, 0, len(req.Inputs))
	for i, in := range req.Inputs {
		if _, ok := skip[i]; ok {
			continue
		}
		results = append(results, s.upsertOne(objectType, in.IDProperty, in.ID, props[i], started))
	}
	s.counts.Upserts++
	s.counts.InputsUpserted += len(results)
	out := map[string]any{"status": "COMPLETE", "results": results, "startedAt": stamp(started), "completedAt": stamp(time.Now())}
	if len(bad) == 0 {
		s.reply(w, http.StatusOK, out)
		return
	}
	errs := make([]map[string]any, 0, len(bad))
	for _, b := range bad {
		errs = append(errs, map[string]any{"status": "error", "category": "VALIDATION_ERROR", "message": b.message,
			"context": map[string][]string{"objectWriteTraceId": {req.Inputs[b.input].TraceID}}})
	}
	out["numErrors"], out["errors"] = len(errs), errs
	s.reply(w, http.StatusMultiStatus, out)
}

// upsertOne creates or updates one object and returns its view.
func (s *Server) upsertOne(objectType, idProp, id string, props map[string]string, now time.Time) map[string]any {
	o := s.store.find(objectType, idProp, id)
	isNew := o == nil
	if isNew {
		o = s.store.create(objectType, now)
	}
	set := make(map[string]string, len(props)+1)
	for k, v := range props {
		set[k] = v
	}
	set[idProp] = id
	s.store.set(objectType, o, set, now)
	return o.upserted(isNew)
}

// idsRequest is the body of batch read and archive.
type idsRequest struct {
	Inputs     []struct{ ID string } `json:"inputs"`
	IDProperty string                `json:"idProperty"`
	Properties []string              `json:"properties"`
}

// read serves batch/read; s.mu is held.
func (s *Server) read(w http.ResponseWriter, objectType string, body []byte) {
	var req idsRequest
	if err := json.Unmarshal(body, &req); err != nil || len(req.Inputs) > MaxInputs {
		s.fail(w, http.StatusBadRequest, "", fmt.Sprintf("Invalid input: %d inputs (at most %d) or bad JSON", len(req.Inputs), MaxInputs))
		return
	}
	s.counts.Reads++
	results := []map[string]any{}
	var missing []string
	for _, in := range req.Inputs {
		if o := s.store.find(objectType, req.IDProperty, in.ID); o != nil {
			results = append(results, o.view(req.Properties))
		} else {
			missing = append(missing, in.ID)
		}
	}
	out := map[string]any{"status": "COMPLETE", "results": results, "startedAt": stamp(time.Now()), "completedAt": stamp(time.Now())}
	if len(missing) == 0 {
		s.reply(w, http.StatusOK, out)
		return
	}
	out["numErrors"] = 1
	out["errors"] = []map[string]any{{"status": "error", "category": "OBJECT_NOT_FOUND",
		"message": "Could not get some " + strings.ToUpper(strings.TrimSuffix(objectType, "s")) + " objects, they may be deleted or not exist. Check that ids are valid.",
		"context": map[string][]string{"ids": missing}}}
	s.reply(w, http.StatusMultiStatus, out)
}

// archive serves batch/archive; s.mu is held.
func (s *Server) archive(w http.ResponseWriter, objectType string, body []byte) {
	var req idsRequest
	if err := json.Unmarshal(body, &req); err != nil || len(req.Inputs) > MaxInputs {
		s.fail(w, http.StatusBadRequest, "", fmt.Sprintf("Invalid input: %d inputs (at most %d) or bad JSON", len(req.Inputs), MaxInputs))
		return
	}
	s.counts.Archives++
	for _, in := range req.Inputs {
		s.store.archive(objectType, in.ID)
	}
	w.WriteHeader(http.StatusNoContent)
}

// associationRequest is the body of a v4 associations batch create.
type associationRequest struct {
	Inputs []struct {
		From  struct{ ID string } `json:"from"`
		To    struct{ ID string } `json:"to"`
		Types []struct {
			Category string `json:"associationCategory"`
			TypeID   int    `json:"associationTypeId"`
		} `json:"types"`
	} `json:"inputs"`
}

// associate serves the v4 associations batch create; s.mu is held.
func (s *Server) associate(w http.ResponseWriter, fromType, toType string, body []byte) {
	var req associationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "", "Invalid input JSON: "+err.Error())
		return
	}
	for _, in := range req.Inputs {
		if s.store.objects[fromType][in.From.ID] == nil || s.store.objects[toType][in.To.ID] == nil || len(in.Types) == 0 {
			s.fail(w, http.StatusBadRequest, "", fmt.Sprintf("Invalid association: %s %s to %s %s", fromType, in.From.ID, toType, in.To.ID))
			return
		}
	}
	s.counts.AssociationCreates++
	results := make([]map[string]any, 0, len(req.Inputs))
	for _, in := range req.Inputs {
		s.link(fromType+"/"+toType, in.From.ID, in.To.ID+"/"+strconv.Itoa(in.Types[0].TypeID))
		results = append(results, map[string]any{"fromObjectId": in.From.ID, "toObjectId": in.To.ID, "labels": []string{}})
	}
	s.reply(w, http.StatusCreated, map[string]any{"status": "COMPLETE", "results": results})
}

// link stores one association; creating it again changes nothing.
func (s *Server) link(pair, fromID, target string) {
	if s.store.assocs[pair] == nil {
		s.store.assocs[pair] = map[string]map[string]struct{}{}
	}
	if s.store.assocs[pair][fromID] == nil {
		s.store.assocs[pair][fromID] = map[string]struct{}{}
	}
	s.store.assocs[pair][fromID][target] = struct{}{}
}
