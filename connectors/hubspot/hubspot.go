// Package hubspot is the sink connector for HubSpot CRM objects (connector: hubspot): records are
// upserted by a unique property through the CRM v3 batch upsert API, deleted through batch read
// plus batch archive, and optionally associated with records of other objects through the v4
// associations API, all paced under the private app's rate limit.
//
// Settings (the sink's `with` block): token, object_type, id_property, base_url,
// requests_per_10s, time_zone, timeout, associations, soft_delete_column; declared in settings,
// see docs/connectors.md.
//
// # Upserts
//
// Upserts go to POST /crm/v3/objects/{object_type}/batch/upsert, at most 100 inputs a request
// ({"id": key value, "idProperty": id_property, "objectWriteTraceId": record index,
// "properties": {field: value}}). A batch's requests run up to 4 at a time. Values are converted
// by PropertyValue (nil clears a property; timestamps become epoch milliseconds). Fields absent
// from a record (unchanged TOAST columns) are not sent, so HubSpot keeps their values; fields
// named by an association's from_field are used for the lookup and not sent as properties.
// Upserting the same values again changes nothing, so a replayed batch is harmless.
//
// # Deletes and truncates
//
// A delete looks its record up by id_property (POST …/batch/read) and archives what it finds
// (POST …/batch/archive; HubSpot keeps archived records restorable for 90 days); a record that
// is not found is already gone. With on_delete: soft_delete the runtime sends an upsert of the
// soft-delete property instead; with ignore, nothing. Truncates are refused per record
// ("truncate is not supported by HubSpot"), so they go to the dead-letter topic.
//
// # Associations
//
// For each association, records carrying a value in from_field are associated, after their
// upsert, with the to_object_type record whose to_id_property has that value (looked up with
// batch read), through POST /crm/v4/associations/{object_type}/{to_object_type}/batch/create.
// A record whose target does not exist is rejected with that reason (its properties are applied).
//
// # Replies
//
//   - 200/201: applied. 207 Multi-Status: the inputs named by each error (by objectWriteTraceId,
//     or by id) are rejected with HubSpot's category and message, the rest are applied.
//   - 400 naming the inputs at fault: those are rejected and the others sent again; a 400 naming
//     none fails the batch (the runtime bisects it to find the records at fault).
//   - 429: by the body's policyName. TEN_SECONDLY_ROLLING and SECONDLY: retried after the
//     Retry-After header, else once the window has room again. DAILY: the sink pauses until the
//     next midnight in time_zone (plus a minute), logging "HubSpot daily limit reached; pausing
//     until …" once; every Apply returns a retry after the remaining time without calling
//     HubSpot. A pause also starts when X-HubSpot-RateLimit-Daily-Remaining reaches 0. If the
//     limit is still reached right after the computed reset, the time zone is wrong and the
//     connector probes hourly.
//   - 401 (expired or revoked token), 403 (missing scopes), 404 (unknown object type): retried,
//     with one error log until a request succeeds: the operator must fix the token or the
//     settings, and the sink waits rather than dead-lettering every record.
//   - 423 Locked: retried after 2 s, as HubSpot asks. 408, 5xx, timeouts: retried.
//
// # Pacing
//
// Requests (upserts, reads, archives, associations alike) pass a token bucket refilled at 95% of
// requests_per_10s / 10 per second with a burst of the remaining 5%, so no rolling 10-second
// window holds more than the budget. X-HubSpot-RateLimit-Max and -Interval-Milliseconds lower
// the pace when HubSpot announces a smaller budget; X-HubSpot-RateLimit-Remaining at 0 or 1
// (another integration spending the same budget) holds requests back a few slots.
package hubspot

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Limits of HubSpot's API.
const (
	// MaxInputs is the most inputs a CRM object batch request takes.
	MaxInputs = 100
	// inFlight is the most requests one Apply has in flight.
	inFlight = 4
	// window is the span of requests_per_10s.
	window = 10 * time.Second
)

var _ sink.Factory = New

// Connector applies batches to one HubSpot object type. It is safe for concurrent use.
type Connector struct {
	cfg    *config
	client *http.Client
	pacer  *pacer
	log    *zap.Logger
	stats  counters
	alerts alerts
}

// counters are the connector's running totals.
type counters struct {
	requests, throttled, unauthorized atomic.Int64
}

// Status is what a connector reports for status pages and metrics.
type Status struct {
	Requests     int64     // HTTP requests sent to HubSpot
	Throttled    int64     // of which answered 429
	Unauthorized int64     // of which answered 401
	PausedUntil  time.Time // end of the daily-limit pause, or zero
	Stalled      string    // why requests fail until the operator acts (token, scopes), or ""
}

// New configures and opens a HubSpot connector from the sink's parameters (settings: see
// Descriptor).
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// newConnector builds the connector of a configured sink; it connects on the first batch.
func newConnector(cfg *config, p sink.Params) *Connector {
	log := p.Logger(zap.String("object_type", cfg.objectType))
	log.Info("hubspot sink configured", zap.String("base_url", cfg.baseURL), zap.String("id_property", cfg.idProperty),
		zap.Int("requests_per_10s", cfg.requestsPer10s), zap.Int("associations", len(cfg.associations)),
		zap.Duration("timeout", cfg.timeout), zap.String("time_zone", cfg.location.String()))
	return &Connector{
		cfg:    cfg,
		client: &http.Client{Timeout: cfg.timeout},
		pacer:  newPacer(cfg.requestsPer10s, window, cfg.location, log),
		log:    log,
		alerts: alerts{log: log},
	}
}

var _ sink.GroupShared = (*Connector)(nil)

// SetGroupShare paces this worker to its share of the request budget: the budget is the app's in
// the account, shared by every worker of the sink.
func (c *Connector) SetGroupShare(fraction float64) { c.pacer.setShare(fraction) }

// Close releases idle connections.
func (c *Connector) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// Status reports the connector's totals and whether it is paused or stalled.
func (c *Connector) Status() Status {
	return Status{
		Requests:     c.stats.requests.Load(),
		Throttled:    c.stats.throttled.Load(),
		Unauthorized: c.stats.unauthorized.Load(),
		PausedUntil:  c.pacer.pausedUntil(),
		Stalled:      c.alerts.current(),
	}
}

// Apply upserts, deletes and refuses (truncates) the batch's records. Records HubSpot rejects
// and records that cannot be encoded come back in a *sink.PartialError.
func (c *Connector) Apply(ctx context.Context, b *sink.Batch) error {
	var failed []sink.RecordError
	for _, seg := range segments(b.Records, c.cfg.idProperty) {
		f, err := c.applySegment(ctx, b.Records, seg)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b sink.RecordError) int { return a.Index - b.Index })
	return &sink.PartialError{Failed: failed}
}

// applySegment applies records whose keys are distinct, so its requests may run in any order.
func (c *Connector) applySegment(ctx context.Context, recs []sink.Record, seg []int) ([]sink.RecordError, error) {
	upserts, deletes, failed := c.prepare(recs, seg)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	run := func(task func(context.Context) ([]sink.RecordError, error)) {
		g.Go(func() error {
			f, err := task(gctx)
			mu.Lock()
			failed = append(failed, f...)
			mu.Unlock()
			return err
		})
	}
	for chunk := range slices.Chunk(upserts, MaxInputs) {
		run(func(ctx context.Context) ([]sink.RecordError, error) { return c.upsertChunk(ctx, chunk) })
	}
	for chunk := range slices.Chunk(deletes, MaxInputs) {
		run(func(ctx context.Context) ([]sink.RecordError, error) { return nil, c.deleteChunk(ctx, chunk) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return failed, nil
}

// segments splits record indexes into runs of distinct keys, in order. A batch repeats a key
// only across a truncate (the runtime coalesces each key to its last state otherwise), and
// HubSpot refuses a batch input naming the same record twice.
func segments(recs []sink.Record, idField string) [][]int {
	var out [][]int
	var cur []int
	seen := map[string]bool{}
	for i := range recs {
		id, _ := PropertyValue(recs[i].Key[idField])
		if recs[i].Op != sink.OpTruncate && seen[id] {
			out, cur, seen = append(out, cur), nil, map[string]bool{}
		}
		seen[id] = recs[i].Op != sink.OpTruncate
		cur = append(cur, i)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// input is one record ready to send.
type input struct {
	index int    // in Batch.Records
	id    string // the id property's value
	props map[string]string
	rec   *sink.Record
}

// prepare encodes a segment's records into upserts and deletes; truncates and records that
// cannot be encoded fail at once.
func (c *Connector) prepare(recs []sink.Record, seg []int) (upserts, deletes []*input, failed []sink.RecordError) {
	for _, i := range seg {
		r := &recs[i]
		if r.Op == sink.OpTruncate {
			failed = append(failed, sink.RecordError{Index: i, Reason: "truncate is not supported by HubSpot"})
			continue
		}
		in, err := c.encode(i, r)
		if err != nil {
			failed = append(failed, sink.RecordError{Index: i, Reason: "hubspot: " + err.Error()})
			continue
		}
		if r.Op == sink.OpDelete {
			deletes = append(deletes, in)
		} else {
			upserts = append(upserts, in)
		}
	}
	return upserts, deletes, failed
}

// encode converts a record's key and, for upserts, its fields.
func (c *Connector) encode(i int, r *sink.Record) (*input, error) {
	id, err := PropertyValue(r.Key[c.cfg.idProperty])
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, errEmptyID
	}
	in := &input{index: i, id: id, rec: r}
	if r.Op != sink.OpUpsert {
		return in, nil
	}
	in.props = make(map[string]string, len(r.Fields))
	for name, v := range r.Fields {
		if c.associationField(name) {
			continue
		}
		s, err := PropertyValue(v)
		if err != nil {
			return nil, errorf("property %s: %w", name, err)
		}
		in.props[name] = s
	}
	return in, nil
}

// associationField reports whether a field only feeds an association lookup.
func (c *Connector) associationField(name string) bool {
	if name == c.cfg.idProperty {
		return false
	}
	for _, a := range c.cfg.associations {
		if a.FromField == name {
			return true
		}
	}
	return false
}

var _ sink.LongApplier = (*Connector)(nil)

// MaxApply is the longest one Apply may take: the batch upsert and the association requests
// after it, each given with.timeout.
func (c *Connector) MaxApply() time.Duration { return 3 * c.cfg.timeout }
