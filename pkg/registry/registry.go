// Package registry serves backflow's schema topics through the read-only part of the Confluent
// Schema Registry REST API, so that clients that know only Kafka and that API (Confluent's
// serializers, @kafkajs/confluent-schema-registry, confluent-kafka-go, …) decode topics written
// with kafka.format avro-confluent.
//
// A schema's id is codec.ConfluentID of its fingerprint: derived, not allocated, so it needs no
// state besides the schema topic and every process serving it answers the same. Subjects follow
// the TopicNameStrategy from the schema's name: the Envelope of namespace N is subject "N-value",
// its Key "N-key" (N is the topic name whenever the prefix, schema and table are valid Avro names;
// other characters become '_'). Versions number a subject's schemas in schema-topic order.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// Confluent's error codes (io.confluent.kafka.schemaregistry.rest.exceptions).
const (
	codeSubjectNotFound = 40401
	codeVersionNotFound = 40402
	codeSchemaNotFound  = 40403
	codeBackend         = 50001 // the schema topic could not be read
)

const contentType = "application/vnd.schemaregistry.v1+json"

// Server answers registry requests from the schema topics it reads. It is safe for concurrent use.
type Server struct {
	opts   []kgo.Opt
	topics []string

	mu    sync.Mutex
	store *codec.SchemaStore
}

// New returns a Server reading topics (e.g. "<prefix>._schemas") with the connection options
// opts (brokers, TLS, SASL).
func New(opts []kgo.Opt, topics []string) *Server {
	return &Server{opts: opts, topics: topics, store: codec.NewSchemaStore()}
}

// sync reads the schema topics again from their start into a fresh store, so that versions keep
// the topic's order. Schema topics are compacted and small; clients cache ids, so this runs on
// listings and on ids not seen yet, not per message.
func (s *Server) sync(ctx context.Context) (*codec.SchemaStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := codec.NewSchemaStore()
	for _, t := range s.topics {
		err := kafka.ReadToEnd(ctx, s.opts, t, func(r *kgo.Record) {
			_, _ = st.AddRecord(r.Key, r.Value) // a malformed record only hides its own schema
		})
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, err // a topic that does not exist yet holds no schema; anything else is an outage
		}
	}
	s.store = st
	return st, nil
}

// current returns the store as last read.
func (s *Server) current() *codec.SchemaStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /schemas/ids/{id}", s.schemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/schema", s.schemaByID)
	mux.HandleFunc("GET /subjects", s.subjects)
	mux.HandleFunc("GET /subjects/{subject}/versions", s.versions)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}", s.version)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", s.version)
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"compatibilityLevel": "NONE"})
	})
	return mux
}

func (s *Server) schemaByID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 31)
	if err != nil {
		writeError(w, http.StatusNotFound, codeSchemaNotFound, fmt.Sprintf("Schema %q not found", r.PathValue("id")))
		return
	}
	raw, ok := rawByID(s.current(), uint32(id))
	if !ok {
		st, err := s.sync(r.Context()) // written since the last read?
		if err != nil {
			writeError(w, http.StatusInternalServerError, codeBackend, "read schema topics: "+err.Error())
			return
		}
		raw, ok = rawByID(st, uint32(id))
	}
	if !ok {
		writeError(w, http.StatusNotFound, codeSchemaNotFound, fmt.Sprintf("Schema %d not found", id))
		return
	}
	if strings.HasSuffix(r.URL.Path, "/schema") {
		writeRaw(w, raw)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"schema": raw})
}

func rawByID(st *codec.SchemaStore, id uint32) (string, bool) {
	_, fp, ok := st.LookupID(id)
	if !ok {
		return "", false
	}
	return st.Raw(fp)
}

// entry is one schema under a subject.
type entry struct {
	id  uint32
	raw string
}

// bySubject groups the store's schemas by subject, in schema-topic order.
func bySubject(st *codec.SchemaStore) (map[string][]entry, []string) {
	out := map[string][]entry{}
	var names []string
	for _, fp := range st.Fingerprints() {
		id := codec.ConfluentID(fp)
		if _, owner, _ := st.LookupID(id); owner != fp {
			continue // its id belongs to an earlier schema: clients could not fetch it by id
		}
		sc, _ := st.Lookup(fp)
		raw, _ := st.Raw(fp)
		subj := Subject(sc)
		if _, ok := out[subj]; !ok {
			names = append(names, subj)
		}
		out[subj] = append(out[subj], entry{id: id, raw: raw})
	}
	return out, names
}

// Subject is the TopicNameStrategy subject of a schema backflow writes: "<namespace>-value" for
// an Envelope, "<namespace>-key" for a Key, the full name plus "-value" otherwise.
func Subject(sc avro.Schema) string {
	named, ok := sc.(avro.NamedSchema)
	if !ok {
		return string(sc.Type()) + "-value"
	}
	full := named.FullName()
	if ns, ok := strings.CutSuffix(full, ".Key"); ok {
		return ns + "-key"
	}
	if ns, ok := strings.CutSuffix(full, ".Envelope"); ok {
		return ns + "-value"
	}
	return full + "-value"
}

func (s *Server) subjects(w http.ResponseWriter, r *http.Request) {
	st, err := s.sync(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeBackend, "read schema topics: "+err.Error())
		return
	}
	_, names := bySubject(st)
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, names)
}

// subjectEntries reads the topics and returns the schemas of the request's subject, or answers
// the request itself when there are none.
func (s *Server) subjectEntries(w http.ResponseWriter, r *http.Request) ([]entry, bool) {
	st, err := s.sync(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeBackend, "read schema topics: "+err.Error())
		return nil, false
	}
	subj := r.PathValue("subject")
	all, _ := bySubject(st)
	es, ok := all[subj]
	if !ok {
		writeError(w, http.StatusNotFound, codeSubjectNotFound, fmt.Sprintf("Subject '%s' not found.", subj))
		return nil, false
	}
	return es, true
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	es, ok := s.subjectEntries(w, r)
	if !ok {
		return
	}
	vs := make([]int, len(es))
	for i := range es {
		vs[i] = i + 1
	}
	writeJSON(w, http.StatusOK, vs)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	es, ok := s.subjectEntries(w, r)
	if !ok {
		return
	}
	v, ok := parseVersion(r.PathValue("version"), len(es))
	if !ok {
		writeError(w, http.StatusNotFound, codeVersionNotFound, fmt.Sprintf("Version %s not found.", r.PathValue("version")))
		return
	}
	e := es[v-1]
	if strings.HasSuffix(r.URL.Path, "/schema") {
		writeRaw(w, e.raw)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"subject": r.PathValue("subject"), "version": v, "id": e.id, "schema": e.raw,
	})
}

// parseVersion reads a version path element: a number from 1 to n, "latest" or -1 (n).
func parseVersion(s string, n int) (int, bool) {
	if s == "latest" || s == "-1" {
		return n, true
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > n {
		return 0, false
	}
	return v, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

func writeRaw(w http.ResponseWriter, raw string) {
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(raw))
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"error_code": code, "message": msg})
}
