package salesforce

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// maxUpload bounds the CSV of one Bulk API 2.0 job: Salesforce takes at most 150 MB per upload
// after its base64 conversion (about +50%), so it recommends at most 100 MB of CSV.
const maxUpload = 100 << 20

// Bulk API 2.0 job states.
const (
	stateUploadComplete = "UploadComplete"
	stateJobComplete    = "JobComplete"
	stateFailed         = "Failed"
	stateAborted        = "Aborted"
)

// Polling of a job's state: from pollFirst, growing by half each time, up to pollMax.
const (
	pollFirst = 200 * time.Millisecond
	pollMax   = 10 * time.Second
)

// jobInfo is the part of a Bulk API 2.0 job's info the connector reads.
type jobInfo struct {
	ID                     string `json:"id"`
	State                  string `json:"state"`
	ErrorMessage           string `json:"errorMessage"`
	NumberRecordsProcessed int64  `json:"numberRecordsProcessed"`
	NumberRecordsFailed    int64  `json:"numberRecordsFailed"`
}

// csvPart is the CSV of one job and the records in it.
type csvPart struct {
	data []byte
	recs []prepared
}

// upsertBulk upserts recs through Bulk API 2.0 ingest jobs (one per 100 MB of CSV) and returns
// the records Salesforce rejected.
func (c *connector) upsertBulk(ctx context.Context, recs []prepared) ([]sink.RecordError, error) {
	var failed []sink.RecordError
	for _, part := range c.csvParts(recs) {
		f, err := c.runJob(ctx, part)
		if err != nil {
			return nil, err
		}
		failed = append(failed, f...)
	}
	return failed, nil
}

// csvParts writes recs as CSV: the external id, then every field any record sets. A record
// without a field leaves its cell empty, which Bulk API 2.0 ignores on update (unchanged TOAST
// columns stay untouched); null values are #N/A.
func (c *connector) csvParts(recs []prepared) []csvPart {
	columns, at := []string{c.cfg.externalID}, map[string]int{}
	for _, pr := range recs {
		for _, n := range pr.names {
			if _, ok := at[n]; !ok {
				at[n] = len(columns)
				columns = append(columns, n)
			}
		}
	}
	header := csvLine(columns)
	var parts []csvPart
	cur := csvPart{data: append([]byte(nil), header...)}
	for _, pr := range recs {
		row := make([]string, len(columns))
		row[0] = pr.extID
		for k, n := range pr.names {
			row[at[n]] = csvValue(pr.values[k])
		}
		line := csvLine(row)
		if len(cur.recs) > 0 && len(cur.data)+len(line) > maxUpload {
			parts = append(parts, cur)
			cur = csvPart{data: append([]byte(nil), header...)}
		}
		cur.data = append(cur.data, line...)
		cur.recs = append(cur.recs, pr)
	}
	return append(parts, cur)
}

// csvLine encodes one CSV line ending in LF.
func csvLine(cells []string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(cells) // writing to a bytes.Buffer cannot fail
	w.Flush()
	return buf.Bytes()
}

// runJob creates a job, uploads the CSV, closes it, waits for the outcome and reads the results.
func (c *connector) runJob(ctx context.Context, part csvPart) ([]sink.RecordError, error) {
	id, err := c.createJob(ctx)
	if err != nil {
		return nil, err
	}
	_, err = c.do(ctx, apiRequest{method: "PUT", path: "/jobs/ingest/" + id + "/batches", body: part.data, contentType: "text/csv"})
	if err == nil {
		_, err = c.setJobState(ctx, id, stateUploadComplete)
	}
	var info jobInfo
	if err == nil {
		info, err = c.waitJob(ctx, id)
	}
	if err != nil {
		// Whatever ended the attempt (the caller gave up, an upload or a poll failed, the job
		// outlived bulk_timeout), a job left open or running would go on writing these records
		// after the retry, or the partition's next owner, wrote newer values for them.
		c.abortJob(id)
		return nil, err
	}
	c.log.Info("salesforce bulk job finished", zap.String("job", id), zap.String("state", info.State),
		zap.Int("records", len(part.recs)), zap.Int64("processed", info.NumberRecordsProcessed),
		zap.Int64("failed", info.NumberRecordsFailed), zap.String("error", info.ErrorMessage))
	return c.jobResults(ctx, info, part.recs)
}

// createJob creates an upsert ingest job and returns its id.
func (c *connector) createJob(ctx context.Context) (string, error) {
	spec, err := json.Marshal(map[string]string{"object": c.cfg.sobject, "externalIdFieldName": c.cfg.externalID,
		"contentType": "CSV", "operation": "upsert", "lineEnding": "LF", "columnDelimiter": "COMMA"})
	if err != nil {
		return "", fmt.Errorf("salesforce: encode bulk job: %w", err)
	}
	body, err := c.do(ctx, apiRequest{method: "POST", path: "/jobs/ingest", body: spec, contentType: "application/json"})
	if err != nil {
		return "", err
	}
	var info jobInfo
	if err := json.Unmarshal(body, &info); err != nil || info.ID == "" || strings.ContainsAny(info.ID, "/?#") {
		return "", fmt.Errorf("salesforce: POST /jobs/ingest: no job id in the answer: %s", httpx.Snippet(body, snippetBytes))
	}
	return info.ID, nil
}

// setJobState moves a job to UploadComplete or Aborted.
func (c *connector) setJobState(ctx context.Context, id, state string) (jobInfo, error) {
	body, err := c.do(ctx, apiRequest{method: "PATCH", path: "/jobs/ingest/" + id,
		body: []byte(`{"state":"` + state + `"}`), contentType: "application/json"})
	if err != nil {
		return jobInfo{}, err
	}
	var info jobInfo
	_ = json.Unmarshal(body, &info) // the answer is informative only
	return info, nil
}

// abortJob aborts a job the connector gives up on, best effort. It does not use the attempt's
// context: that one may be the very reason to abort (cancelled on shutdown or a revoke).
func (c *connector) abortJob(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	if _, err := c.setJobState(ctx, id, stateAborted); err != nil {
		c.log.Warn("salesforce: could not abort bulk job", zap.String("job", id), zap.Error(err))
	}
}

// waitJob polls a job until it is JobComplete, Failed or Aborted, at growing intervals, for at
// most bulk_timeout; then the caller aborts the job and the batch is retried.
func (c *connector) waitJob(ctx context.Context, id string) (jobInfo, error) {
	deadline := time.Now().Add(c.cfg.bulkTimeout)
	for wait := pollFirst; ; wait = min(wait*3/2, pollMax) {
		body, err := c.do(ctx, apiRequest{method: "GET", path: "/jobs/ingest/" + id})
		if err != nil {
			return jobInfo{}, err
		}
		var info jobInfo
		if err := json.Unmarshal(body, &info); err != nil {
			return jobInfo{}, fmt.Errorf("salesforce: GET /jobs/ingest/%s: unreadable answer: %w", id, err)
		}
		info.ID = id
		switch info.State {
		case stateJobComplete, stateFailed, stateAborted:
			return info, nil
		}
		if time.Now().After(deadline) {
			return jobInfo{}, sink.Retryable(fmt.Errorf("salesforce: bulk job %s still %s after with.bulk_timeout %s; aborting it",
				id, info.State, c.cfg.bulkTimeout))
		}
		if err := httpx.Sleep(ctx, wait); err != nil {
			return jobInfo{}, err
		}
	}
}

// jobResults matches the job's successful and failed results to recs by external id (they are
// not in input order). Records the job reports neither way (a Failed or Aborted job, a result
// that cannot be matched) and records failed with a transient error are upserted again through
// sObject Collections, which is harmless for the others: upserts by external id are idempotent.
func (c *connector) jobResults(ctx context.Context, info jobInfo, recs []prepared) ([]sink.RecordError, error) {
	pending := make(map[string]prepared, len(recs))
	for _, pr := range recs {
		pending[pr.extID] = pr
	}
	ok, err := c.results(ctx, info, "successfulResults")
	if err != nil {
		return nil, err
	}
	for _, row := range ok {
		delete(pending, row.extID)
	}
	bad, err := c.results(ctx, info, "failedResults")
	if err != nil {
		return nil, err
	}
	var failed []sink.RecordError
	for _, row := range bad {
		pr, found := pending[row.extID]
		if !found || isTransientBulkError(row.err) {
			continue
		}
		delete(pending, row.extID)
		failed = append(failed, sink.RecordError{Index: pr.index,
			Reason: fmt.Sprintf("salesforce rejected the record (bulk job %s): %s", info.ID, row.err)})
	}
	again, err := c.reapply(ctx, info, recs, pending)
	return append(failed, again...), err
}

// reapply upserts the records still pending after a job through sObject Collections.
func (c *connector) reapply(ctx context.Context, info jobInfo, recs []prepared, pending map[string]prepared) ([]sink.RecordError, error) {
	if len(pending) == 0 {
		return nil, nil
	}
	var rest []prepared
	for _, pr := range recs {
		if _, ok := pending[pr.extID]; ok {
			rest = append(rest, pr)
		}
	}
	c.log.Warn("salesforce bulk job left records without a final result; upserting them through sObject Collections",
		zap.String("job", info.ID), zap.String("state", info.State), zap.Int("records", len(rest)), zap.String("error", info.ErrorMessage))
	return c.upsertCollections(ctx, rest)
}

// isTransientBulkError reports whether an sf__Error value is one a retry can fix.
func isTransientBulkError(e string) bool {
	code, _, _ := strings.Cut(e, ":")
	return transientRecordCodes[code]
}

// resultRow is one row of a job's results: its external id and, for failures, sf__Error.
type resultRow struct {
	extID string
	err   string
}

// results downloads and parses successfulResults or failedResults. Retryable errors end the
// attempt; results that cannot be read are treated as absent (their records are re-applied).
func (c *connector) results(ctx context.Context, info jobInfo, kind string) ([]resultRow, error) {
	body, err := c.do(ctx, apiRequest{method: "GET", path: "/jobs/ingest/" + info.ID + "/" + kind})
	if err == nil {
		var rows []resultRow
		if rows, err = parseResults(body, c.cfg.externalID); err == nil {
			return rows, nil
		}
	}
	if sink.IsRetryable(err) || ctx.Err() != nil {
		return nil, err
	}
	c.log.Warn("salesforce: bulk job results unreadable", zap.String("job", info.ID), zap.String("results", kind), zap.Error(err))
	return nil, nil
}

// parseResults reads a results CSV: a header (sf__Id, sf__Created or sf__Error, then the
// uploaded columns) and one row per record.
func parseResults(data []byte, extField string) ([]resultRow, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("results header: %w", err)
	}
	extCol, errCol := -1, -1
	for i, h := range header {
		switch {
		case strings.EqualFold(h, extField):
			extCol = i
		case h == "sf__Error":
			errCol = i
		}
	}
	if extCol < 0 {
		return nil, fmt.Errorf("results have no %s column", extField)
	}
	var rows []resultRow
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("results: %w", err)
		}
		row := resultRow{extID: cell(rec, extCol)}
		if errCol >= 0 {
			row.err = cell(rec, errCol)
		}
		rows = append(rows, row)
	}
}

// cell returns rec[i], or "" when the row is short.
func cell(rec []string, i int) string {
	if i < len(rec) {
		return rec[i]
	}
	return ""
}
