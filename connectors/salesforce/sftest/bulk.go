package sftest

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// CSVNull is the Bulk API 2.0 cell that sets a field to null.
const CSVNull = "#N/A"

// job is one Bulk API 2.0 ingest job.
type job struct {
	ID                  string `json:"id"`
	Operation           string `json:"operation"`
	Object              string `json:"object"`
	ExternalIDFieldName string `json:"externalIdFieldName,omitempty"`
	State               string `json:"state"`
	ContentType         string `json:"contentType"`
	LineEnding          string `json:"lineEnding"`
	ColumnDelimiter     string `json:"columnDelimiter"`
	APIVersion          string `json:"apiVersion"`
	ContentURL          string `json:"contentUrl"`
	CreatedDate         string `json:"createdDate"`
	JobType             string `json:"jobType"`
	ConcurrencyMode     string `json:"concurrencyMode"`
	Processed           int    `json:"numberRecordsProcessed"`
	Failed              int    `json:"numberRecordsFailed"`
	ErrorMessage        string `json:"errorMessage,omitempty"`

	data    []byte
	polls   int
	header  []string
	success [][]string // sf__Id, sf__Created, then the uploaded cells
	failed  [][]string // sf__Id, sf__Error, then the uploaded cells
}

// createJob serves POST /jobs/ingest.
func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	j := &job{ContentType: "CSV", LineEnding: "LF", ColumnDelimiter: "COMMA"}
	if err := json.NewDecoder(r.Body).Decode(j); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "unreadable job: "+err.Error())
		return
	}
	switch {
	case j.Object == "":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "object is required")
		return
	case j.Operation != "upsert":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "the stub supports operation upsert only")
		return
	case j.ExternalIDFieldName == "":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "externalIdFieldName is required for upsert")
		return
	case j.ContentType != "CSV" || j.LineEnding != "LF" || j.ColumnDelimiter != "COMMA":
		writeError(w, http.StatusBadRequest, "INVALIDJOB", "the stub supports CSV with LF and COMMA only")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	version := r.PathValue("version")
	j.ID, j.State, j.JobType, j.ConcurrencyMode = s.newID("750"), "Open", "V2Ingest", "Parallel"
	j.APIVersion = strings.TrimPrefix(version, "v")
	j.ContentURL = "services/data/" + version + "/jobs/ingest/" + j.ID + "/batches"
	j.CreatedDate = time.Now().UTC().Format("2006-01-02T15:04:05.000+0000")
	s.jobs[j.ID] = j
	s.stats.BulkJobs++
	writeJSON(w, http.StatusOK, j)
}

// findJob looks a job up, answering 404 if there is none; s.mu is held.
func (s *Server) findJob(w http.ResponseWriter, r *http.Request) *job {
	j := s.jobs[r.PathValue("id")]
	if j == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "The requested resource does not exist")
	}
	return j
}

// uploadJob serves PUT /jobs/ingest/{id}/batches.
func (s *Server) uploadJob(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/csv" {
		writeError(w, http.StatusBadRequest, "INVALIDCONTENTTYPE", "Content-Type must be text/csv")
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALIDBATCH", "unreadable body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.findJob(w, r)
	if j == nil {
		return
	}
	if j.State != "Open" || j.data != nil {
		writeError(w, http.StatusConflict, "INVALIDJOBSTATE", "Found an invalid job state; data can be uploaded once, to an Open job")
		return
	}
	j.data = data
	w.WriteHeader(http.StatusCreated)
}

// patchJob serves PATCH /jobs/ingest/{id}: UploadComplete processes the data, Aborted stops.
func (s *Server) patchJob(w http.ResponseWriter, r *http.Request) {
	var req struct {
		State string `json:"state"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "unreadable body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.findJob(w, r)
	if j == nil {
		return
	}
	switch {
	case req.State == "UploadComplete" && j.State == "Open":
		j.State = "UploadComplete"
		s.process(j)
	case req.State == "Aborted" && j.State != "JobComplete" && j.State != "Failed":
		j.State = "Aborted"
		s.stats.BulkAborts++
	default:
		writeError(w, http.StatusBadRequest, "INVALIDJOBSTATE", "cannot move a "+j.State+" job to "+req.State)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// process applies a job's CSV rows and records their results; s.mu is held.
func (s *Server) process(j *job) {
	rd := csv.NewReader(bytes.NewReader(j.data))
	rows, err := rd.ReadAll()
	if err != nil || len(rows) == 0 {
		j.State, j.ErrorMessage = "Failed", "InvalidBatch : unreadable CSV"
		return
	}
	j.header = rows[0]
	ext := -1
	for i, h := range j.header {
		if strings.EqualFold(h, j.ExternalIDFieldName) {
			ext = i
		}
	}
	if ext < 0 {
		j.State, j.ErrorMessage = "Failed", "InvalidBatch : Field name not found : "+j.ExternalIDFieldName
		return
	}
	for _, row := range rows[1:] {
		s.processRow(j, ext, row)
	}
	s.stats.BulkRecords += len(rows) - 1
}

// processRow upserts one CSV row: an empty cell is ignored, #N/A sets null.
func (s *Server) processRow(j *job, ext int, row []string) {
	j.Processed++
	fields := map[string]any{}
	for i, cell := range row {
		switch {
		case i == ext || i >= len(j.header) || cell == "":
		case cell == CSVNull:
			fields[j.header[i]] = nil
		default:
			fields[j.header[i]] = cell
		}
	}
	if ext >= len(row) || row[ext] == "" {
		j.Failed++
		j.failed = append(j.failed, append([]string{"", "MISSING_ARGUMENT:" + j.ExternalIDFieldName + " not specified:--"}, row...))
		return
	}
	id, created, e := s.upsert(j.Object, j.ExternalIDFieldName, row[ext], fields, false)
	if e != nil {
		j.Failed++
		msg := e.StatusCode + ":" + e.Message + ":" + strings.Join(e.Fields, ",") + " --"
		j.failed = append(j.failed, append([]string{"", msg}, row...))
		return
	}
	flag := "false"
	if created {
		flag = "true"
	}
	j.success = append(j.success, append([]string{id, flag}, row...))
}

// jobInfo serves GET /jobs/ingest/{id}: InProgress for BulkPolls polls, then JobComplete.
func (s *Server) jobInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.findJob(w, r)
	if j == nil {
		return
	}
	if j.State == "UploadComplete" || j.State == "InProgress" {
		j.polls++
		j.State = "InProgress"
		if j.polls > s.cfg.BulkPolls {
			j.State = "JobComplete"
		}
	}
	writeJSON(w, http.StatusOK, j)
}

// results serves successfulResults or failedResults as CSV, rows shuffled.
func (s *Server) results(successful bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		j := s.findJob(w, r)
		if j == nil {
			return
		}
		head, rows := []string{"sf__Id", "sf__Error"}, j.failed
		if successful {
			head, rows = []string{"sf__Id", "sf__Created"}, j.success[min(s.cfg.OmitResults, len(j.success)):]
		}
		rows = append([][]string(nil), rows...)
		s.rng.Shuffle(len(rows), func(a, b int) { rows[a], rows[b] = rows[b], rows[a] })
		w.Header().Set("Content-Type", "text/csv")
		cw := csv.NewWriter(w)
		_ = cw.Write(append(head, j.header...))
		_ = cw.WriteAll(rows)
	}
}
