package httpsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// maxResponse bounds how much of a response body is read.
const maxResponse = 4 << 20

// encoded is one record ready to send.
type encoded struct {
	index int             // in Batch.Records
	json  json.RawMessage // the PayloadRecord
	id    string          // topic, partition and offset, for the Idempotency-Key
}

// encodeBatch encodes every record; those encoding/json refuses are failed at once.
func (c *connector) encodeBatch(b *sink.Batch) ([]encoded, []sink.RecordError) {
	out := make([]encoded, 0, len(b.Records))
	var failed []sink.RecordError
	for i := range b.Records {
		pr := payloadRecord(b, &b.Records[i])
		raw, err := json.Marshal(pr)
		if err != nil {
			failed = append(failed, sink.RecordError{Index: i, Reason: fmt.Sprintf("http: encode record as JSON: %v", err)})
			continue
		}
		out = append(out, encoded{index: i, json: raw, id: pr.IdempotencyKey})
	}
	return out, failed
}

// payloadRecord maps a record to its wire form.
func payloadRecord(b *sink.Batch, r *sink.Record) PayloadRecord {
	topic, partition := r.Topic, r.Partition
	if topic == "" {
		topic, partition = b.Topic, b.Partition
	}
	pr := PayloadRecord{Op: r.Op.String(), Key: sink.JSONTimes(r.Key), Topic: topic, Partition: partition, Offset: r.Offset,
		IdempotencyKey: topic + "-" + strconv.Itoa(int(partition)) + "-" + strconv.FormatInt(r.Offset, 10)}
	switch r.Op {
	case sink.OpUpsert:
		pr.Fields = sink.JSONTimes(r.Fields)
	case sink.OpTruncate:
		pr.Key = nil
	}
	return pr
}

// requestBody assembles the Payload of a chunk from its encoded records.
func (c *connector) requestBody(chunk []encoded) ([]byte, error) {
	name, err := json.Marshal(c.sink)
	if err != nil {
		return nil, fmt.Errorf("http: encode sink name: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"sink":`)
	buf.Write(name)
	buf.WriteString(`,"records":[`)
	for i, e := range chunk {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.json)
	}
	buf.WriteString("]}")
	return buf.Bytes(), nil
}

// idempotencyKey hashes the sink and the records' positions: the same records give the same key.
func (c *connector) idempotencyKey(chunk []encoded) string {
	h := sha256.New()
	io.WriteString(h, c.sink)
	for _, e := range chunk {
		io.WriteString(h, "\n"+e.id)
	}
	return hex.EncodeToString(h.Sum(nil))[:40]
}

// post sends one request and returns the records the receiver rejected, or a batch error.
func (c *connector) post(ctx context.Context, chunk []encoded) ([]sink.RecordError, error) {
	req, err := c.newRequest(ctx, chunk)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, sink.Retryable(fmt.Errorf("http: POST %s: %w", c.cfg.display, httpx.WithoutURL(err)))
	}
	defer httpx.DrainClose(resp.Body)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, sink.Retryable(fmt.Errorf("http: POST %s: read response: %w", c.cfg.display, httpx.WithoutURL(err)))
	}
	return c.outcome(resp, body, chunk)
}

// newRequest builds the signed POST of a chunk.
func (c *connector) newRequest(ctx context.Context, chunk []encoded) (*http.Request, error) {
	body, err := c.requestBody(chunk)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("http: build request for %s: %w", c.cfg.display, httpx.WithoutURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "backflow")
	for name, vals := range c.cfg.headers {
		req.Header[name] = vals
	}
	id, now := c.idempotencyKey(chunk), time.Now().Unix()
	req.Header.Set(IdempotencyKeyHeader, id)
	req.Header.Set(WebhookIDHeader, id)
	req.Header.Set(WebhookTimestampHeader, strconv.FormatInt(now, 10))
	if c.cfg.secret != nil {
		req.Header.Set(SignatureHeader, Sign(c.cfg.secret, body))
		req.Header.Set(WebhookSignatureHeader, SignStandard(c.cfg.key, id, now, body))
	}
	return req, nil
}
