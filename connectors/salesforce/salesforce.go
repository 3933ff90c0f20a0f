// Package salesforce is the sink connector for Salesforce (connector: salesforce): it upserts
// records into one sObject by an External ID field and deletes them by it.
//
// Authentication is OAuth 2.0, client credentials (with.client_id, with.client_secret) or the JWT
// bearer flow (with.client_id, with.username, with.private_key_file: an RS256 assertion with
// iss=client_id, sub=username, aud=login_url, exp=now+3m), against
// {login_url}/services/oauth2/token; requests go to the answer's instance_url. When any call is
// answered 401 INVALID_SESSION_ID the connector logs in again once and repeats the same request, so
// the batch is not lost; if logging in fails the batch is retried (sink.Retryable). Secrets and
// tokens never appear in logs or errors.
//
// The sink's key must be one field: its value is the external id, written to
// with.external_id_field (the key field itself is not sent under its own name).
//
// Upserts, in a batch of at most with.bulk_threshold upserts (streaming), go through sObject
// Collections: PATCH /services/data/{v}/composite/sobjects/{SObject}/{ExternalIdField} with
// {"allOrNone":false,"records":[…]}, 200 records a request, up to with.max_concurrency requests at
// a time. The results come in request order; failed ones are returned in a *sink.PartialError
// with Salesforce's statusCode and message (UNABLE_TO_LOCK_ROW retries the batch instead). Field
// values: strings, numbers, bools as they are; time.Time as an ISO 8601 dateTime in UTC with
// milliseconds (map Date fields to "YYYY-MM-DD" text); nil as null, which clears the field;
// arrays as "a;b" (multi-select picklists); maps as their JSON text; []byte as base64. Fields a
// record does not carry (unchanged TOAST columns) are not sent, so Salesforce keeps them.
//
// Larger batches (replays, backfills) go through a Bulk API 2.0 ingest job: create an upsert job
// (CSV, LF), PUT the CSV, PATCH UploadComplete, poll the job at growing intervals (for at most
// with.bulk_timeout), then read successfulResults and failedResults, which are not in input
// order: they are matched to records by external id. In the CSV an empty cell leaves a field
// unchanged and #N/A sets it to null (nil and "" values). Records a job leaves without a result
// (a Failed or Aborted job, unmatched rows) are upserted again through sObject Collections.
//
// Deletes (on_delete: delete) are one DELETE /sobjects/{SObject}/{ExternalIdField}/{value} a
// record: 404 counts as deleted (replays are harmless), other refusals reject that record. This
// costs a request per delete but needs no id lookup and no query; deletes are rare next to
// upserts. (Soft deletes arrive as upserts.) Truncates are refused per record.
//
// Limits: every data API request holds one of with.max_concurrency slots (Salesforce caps
// concurrent long-running requests) and, with with.requests_per_second, is paced by a token
// bucket so that the org's API allocation is not exceeded. 403 REQUEST_LIMIT_EXCEEDED retries the
// batch after with.limit_backoff (sink.RetryAfter) and is logged; 5xx, 408, timeouts and
// connection errors retry the batch; other 4xx fail it with Salesforce's errorCode and message
// (the runtime then bisects it). A batch retried after some of its requests went through sends
// them again: harmless, upserts by external id are idempotent.
package salesforce

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Factory = New

// connector applies batches to one sObject. It is safe for concurrent use.
type connector struct {
	cfg    *config
	client *http.Client
	auth   *authenticator
	sem    chan struct{} // one slot per request in flight, max_concurrency in all
	pacer  *rate.Limiter // nil without requests_per_second
	log    *zap.Logger
}

// New configures and opens a Salesforce connector from the sink's parameters (settings: see
// Descriptor). It loads the JWT key; it logs in on the first batch.
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// newConnector loads the JWT key of a configured sink and builds its connector.
func newConnector(cfg *config, p sink.Params) (sink.Connector, error) {
	if cfg.auth == AuthJWT {
		key, err := loadRSAKey(cfg.keyFile)
		if err != nil {
			return nil, fmt.Errorf("with.private_key_file: %w", err)
		}
		cfg.privateKey = key
	}
	log := p.Logger(zap.String("sobject", cfg.sobject))
	client := &http.Client{Timeout: cfg.timeout}
	c := &connector{cfg: cfg, client: client, sem: make(chan struct{}, cfg.maxConcurrency), log: log,
		auth: &authenticator{cfg: cfg, client: client, log: log}}
	if cfg.requestsPerSec > 0 {
		c.pacer = rate.NewLimiter(rate.Limit(cfg.requestsPerSec), 1)
	}
	log.Info("salesforce sink configured", zap.String("login_url", cfg.loginURL), zap.String("auth", cfg.auth),
		zap.String("api_version", cfg.apiVersion), zap.String("external_id_field", cfg.externalID),
		zap.Int("bulk_threshold", cfg.bulkThreshold), zap.Int("max_concurrency", cfg.maxConcurrency),
		zap.Float64("requests_per_second", cfg.requestsPerSec))
	return c, nil
}

var _ sink.GroupShared = (*connector)(nil)

// minShare is the least part of requests_per_second a worker paces to: a worker without
// partitions (group share 0) sends nothing, and the floor only keeps its limiter from a rate of
// 0, on which a request would wait forever.
const minShare = 0.01

// SetGroupShare paces this worker to its share of requests_per_second, which is the sink's across
// all its workers.
func (c *connector) SetGroupShare(fraction float64) {
	if c.pacer != nil {
		c.pacer.SetLimit(rate.Limit(c.cfg.requestsPerSec * max(fraction, minShare)))
	}
}

// Close releases idle connections.
func (c *connector) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// Apply upserts and deletes the batch's records. Records Salesforce rejects, truncates and
// records without a usable external id come back in a *sink.PartialError.
func (c *connector) Apply(ctx context.Context, b *sink.Batch) error {
	p := c.planBatch(b)
	failed := p.failed
	if len(p.upserts) > 0 {
		upsert := c.upsertCollections
		if len(p.upserts) > c.cfg.bulkThreshold {
			upsert = c.upsertBulk
		}
		f, err := upsert(ctx, p.upserts)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	if len(p.deletes) > 0 {
		f, err := c.deleteRecords(ctx, p.deletes)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b sink.RecordError) int { return cmp.Compare(a.Index, b.Index) })
	return &sink.PartialError{Failed: failed}
}

var _ sink.LongApplier = (*connector)(nil)

// MaxApply is the longest one Apply may take: a bulk job waited for until with.bulk_timeout,
// plus the requests around it.
func (c *connector) MaxApply() time.Duration { return c.cfg.bulkTimeout + 2*c.cfg.timeout }
