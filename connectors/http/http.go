// Package httpsink is the sink connector for webhooks (connector: http): each batch is POSTed as
// JSON to a configured URL, split into requests of at most with.max_batch records.
//
// The request body is a Payload:
//
//	{"sink": "crm-leads", "records": [
//	  {"op": "upsert", "key": {"id": 7}, "fields": {"id": 7, "score": 0.9},
//	   "topic": "wh.public.leads", "partition": 2, "offset": 1041, "idempotency_key": "wh.public.leads-2-1041"},
//	  {"op": "delete", "key": {"id": 8}, …},
//	  {"op": "truncate", …}]}
//
// Values are encoded by encoding/json: time.Time as RFC 3339 (PostgreSQL's infinite dates and
// timestamps as "infinity" and "-infinity"), []byte as base64, numerics as the
// exact decimal text the mapping produced. Fields left out of an upsert (unchanged TOAST values)
// are absent from "fields": receivers must keep what they have for them. (With on_delete
// soft_delete the runtime sends deletes as upserts of the soft-delete field.) Each request carries an
// Idempotency-Key header, a hash of the sink and of its records' (topic, partition, offset), the
// same on every retry of the same records; the Standard Webhooks headers webhook-id (the same
// key) and webhook-timestamp (the attempt's Unix seconds); and, with with.secret, the signatures
// webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>" (see SignStandard; a
// "whsec_" secret is base64-decoded first) and, for older receivers, X-Backflow-Signature
// "sha256=<hex HMAC-SHA256 of the body>" (see Sign). 307 and 308 redirects are followed within
// the URL's scheme, host and port only.
//
// Replies:
//   - 2xx: applied. The body may report per-record failures by index into the request's records,
//     as {"results": [{"index": 0, "ok": false, "error": "…"}, …]} or
//     {"failed": [{"index": 0, "error": "…"}]}; those records go to the dead-letter topic
//     (a *sink.PartialError), unless one is marked "retryable": true, which retries the batch.
//     207 Multi-Status must carry such a body.
//   - 429: retried after the Retry-After header (seconds or HTTP date); 503 honours it too.
//   - 408, 5xx, connection errors, timeouts: retried.
//   - 401, 403, 404, 405, 407 and unfollowed redirects: retried as well. They say the endpoint or
//     its credentials are wrong, not the records, so the sink stalls visibly rather than
//     dead-lettering everything.
//   - other 4xx: a permanent error quoting the status and the first 200 bytes of the body; the
//     runtime bisects the batch to dead-letter only the records at fault.
//
// A batch split into several requests that fails part-way is retried whole: requests that went
// through are sent again with the same Idempotency-Key, so receivers should deduplicate on it or
// on the records' idempotency_key.
package httpsink

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Headers the connector sets on every request.
const (
	// IdempotencyKeyHeader carries a stable hash of the request's records.
	IdempotencyKeyHeader = "Idempotency-Key"
	// SignatureHeader carries "sha256=<hex>", the HMAC-SHA256 of the body keyed by with.secret.
	// It signs the body alone, so a captured request can be replayed; it is kept for receivers
	// that check it, and WebhookSignatureHeader is the one to verify.
	SignatureHeader = "X-Backflow-Signature"

	// The Standard Webhooks headers (https://www.standardwebhooks.com): the message id (the
	// Idempotency-Key, the same on every retry), the attempt's Unix time in seconds, and, with
	// with.secret, "v1,<base64 HMAC-SHA256 of id.timestamp.body>" (see SignStandard).
	WebhookIDHeader        = "Webhook-Id"
	WebhookTimestampHeader = "Webhook-Timestamp"
	WebhookSignatureHeader = "Webhook-Signature"
)

// standardSecretPrefix marks a Standard Webhooks secret: the base64 of the key follows it.
const standardSecretPrefix = "whsec_"

// Payload is the JSON body of a webhook request.
type Payload struct {
	Sink    string          `json:"sink"`
	Records []PayloadRecord `json:"records"`
}

// PayloadRecord is one record of a Payload. Key is absent for truncates, Fields for deletes and
// truncates.
type PayloadRecord struct {
	Op             string         `json:"op"` // upsert, delete or truncate
	Key            map[string]any `json:"key,omitempty"`
	Fields         map[string]any `json:"fields,omitempty"`
	Topic          string         `json:"topic"`
	Partition      int32          `json:"partition"`
	Offset         int64          `json:"offset"`
	IdempotencyKey string         `json:"idempotency_key"` // "<topic>-<partition>-<offset>"
}

// Sign returns the value of the SignatureHeader for body: "sha256=" and the hex HMAC-SHA256 of
// body keyed by secret. Receivers recompute it over the raw body and compare with hmac.Equal.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// StandardKey returns the HMAC key Standard Webhooks signatures use for with.secret: a secret
// "whsec_<base64>" is decoded, any other secret is used as its bytes.
func StandardKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, standardSecretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(key) == 0 {
		return nil, errors.New("starts with whsec_ but what follows is not base64 (Standard Webhooks secrets are whsec_<base64 of the key>)")
	}
	return key, nil
}

// SignStandard returns the value of the WebhookSignatureHeader: "v1," and the base64
// HMAC-SHA256, keyed by key (see StandardKey), of the message id, the timestamp (Unix seconds)
// and the body joined by dots. Receivers recompute it over the raw body, compare it with
// hmac.Equal to each space-separated signature of the header, and refuse timestamps too far
// from their clock, which stops replays of captured requests.
func SignStandard(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

var _ sink.Factory = New

// connector posts batches to one webhook.
type connector struct {
	cfg    *config
	client *http.Client
	sink   string
	log    *zap.Logger
}

// New configures and opens a webhook connector from the sink's parameters (settings: see
// Descriptor).
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// newConnector builds the connector of a configured sink; a webhook needs no connection up front.
func newConnector(cfg *config, p sink.Params) *connector {
	log := p.Logger(zap.String("url", cfg.display))
	log.Info("webhook sink configured", zap.Duration("timeout", cfg.timeout), zap.Int("max_batch", cfg.maxBatch),
		zap.Bool("signed", cfg.secret != nil), zap.Int("headers", len(cfg.headers)))
	client := &http.Client{Timeout: cfg.timeout, CheckRedirect: keepMethodRedirects}
	return &connector{cfg: cfg, client: client, sink: p.Sink, log: log}
}

// keepMethodRedirects follows 307 and 308 only, which repeat the POST with its body; other
// redirects would turn it into a GET and are returned as they are. It follows them only within
// the configured URL's origin (scheme, host and port): the request carries the records, the
// configured headers (credentials, often) and a signature a replay elsewhere could reuse, and a
// receiver (or whoever took over its DNS name) should not be able to send them to another host
// or downgrade them to plain http. A refused redirect is returned as it is and retried.
func keepMethodRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if code := req.Response.StatusCode; code != http.StatusTemporaryRedirect && code != http.StatusPermanentRedirect {
		return http.ErrUseLastResponse
	}
	if origin(req.URL) != origin(via[0].URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// origin is scheme://host:port of u, the port made explicit and the host lower-cased.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// Close releases idle connections.
func (c *connector) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// Apply posts the batch in requests of at most max_batch records, in order. Records that cannot
// be encoded (NaN, say) and records the receiver rejects are returned in a *sink.PartialError.
func (c *connector) Apply(ctx context.Context, b *sink.Batch) error {
	encoded, failed := c.encodeBatch(b)
	for start := 0; start < len(encoded); start += c.cfg.maxBatch {
		chunk := encoded[start:min(start+c.cfg.maxBatch, len(encoded))]
		rejected, err := c.post(ctx, chunk)
		if err != nil {
			return err
		}
		failed = append(failed, rejected...)
	}
	if len(failed) > 0 {
		return &sink.PartialError{Failed: failed}
	}
	return nil
}

var _ sink.LongApplier = (*connector)(nil)

// MaxApply is the longest one Apply may take: a batch of the sink's default size (1,000 records)
// is two requests of max_batch (500), each given with.timeout.
func (c *connector) MaxApply() time.Duration { return 2 * c.cfg.timeout }
