package sink

// Process: a partition's records in batches of max_records, each prepared (scanned into rows
// for the direct path, or decoded, mapped and coalesced into Records) while the one before is
// applied, and each batch counted by the path it took.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// Counts says what happened to a run of records.
type Counts struct {
	Records      int // records read (tombstones included)
	Applied      int // records the target applied (after coalescing)
	Filtered     int // records the filter or the delete policy skipped
	DeadLettered int // records sent to the dead-letter topic (or collected, see CollectFailures)
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Records += o.Records
	c.Applied += o.Applied
	c.Filtered += o.Filtered
	c.DeadLettered += o.DeadLettered
}

// Process applies a run of records of one topic partition, in offset order, exactly as the live
// sink does: in batches of max_records, each decoded, mapped, filtered, coalesced and applied with
// retries and bisection, dead-lettering what cannot be applied. The next batch is prepared while
// the target applies the current one, so that the sink's work and the target's overlap. It
// returns once every record is applied, skipped or dead-lettered; it does not commit Kafka
// offsets (the caller does). Call Prepare first.
func (s *Sink) Process(ctx context.Context, recs []*kgo.Record) (Counts, error) {
	size := max(s.cfg.Batch.MaxRecords, 1)
	if len(recs) <= size {
		if len(recs) == 0 {
			return Counts{}, nil
		}
		return s.processPartition(ctx, recs)
	}
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan *prepared, 1)
	g.Go(func() error {
		defer close(ready)
		for len(recs) > 0 {
			n := min(len(recs), size)
			p, err := s.prepare(gctx, recs[:n])
			if err != nil {
				return err
			}
			select {
			case ready <- p:
			case <-gctx.Done():
				return gctx.Err()
			}
			recs = recs[n:]
		}
		return nil
	})
	var total Counts
	g.Go(func() error {
		for p := range ready {
			c, err := s.apply(gctx, p)
			if err != nil {
				return err
			}
			total.Add(c)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return Counts{}, err
	}
	return total, nil
}

// processPartition prepares and applies one batch of a partition's records.
func (s *Sink) processPartition(ctx context.Context, recs []*kgo.Record) (Counts, error) {
	p, err := s.prepare(ctx, recs)
	if err != nil {
		return Counts{}, err
	}
	return s.apply(ctx, p)
}

// prepared is a batch of a partition's records, decoded, mapped, filtered and coalesced, or
// scanned into a RowBuffer.
type prepared struct {
	recs     []*kgo.Record // as read
	mapped   []Record      // before coalescing
	batch    *Batch
	filtered int
	bad      []badRecord // for the dead-letter topic
	commits  []time.Time // when the records' changes were committed in the source
	rows     RowBuffer   // the records' rows, for the connector's RowLoader (batch has no Records)
	loaded   int         // rows in rows
}

// badRecord is a record that cannot be applied, and why.
type badRecord struct {
	rec    *kgo.Record
	reason string
}

// prepare turns one batch of a partition's records into a coalesced Batch, or into a RowBuffer
// when the batch can take the connector's fast path; it writes nothing.
func (s *Sink) prepare(ctx context.Context, recs []*kgo.Record) (*prepared, error) {
	if p := s.prepareRows(ctx, recs); p != nil {
		return p, nil
	}
	return s.prepareRecords(ctx, recs)
}

// prepareRecords decodes, maps, filters and coalesces a batch into Records.
func (s *Sink) prepareRecords(ctx context.Context, recs []*kgo.Record) (*prepared, error) {
	p := &prepared{recs: recs, mapped: make([]Record, 0, len(recs))}
	for _, kr := range recs {
		r, keep, reason, err := s.safeToRecord(ctx, kr)
		switch {
		case err != nil:
			return nil, err
		case reason != "":
			p.bad = append(p.bad, badRecord{kr, reason})
		case !keep:
			p.filtered++
		default:
			p.mapped = append(p.mapped, r)
		}
	}
	p.commits = commitTimes(p.mapped)
	p.batch = s.batchOf(recs)
	p.batch.Records = coalesce(p.mapped)
	return p, nil
}

// batchOf returns an empty Batch for a run of one partition's records.
func (s *Sink) batchOf(recs []*kgo.Record) *Batch {
	last := recs[len(recs)-1]
	return &Batch{Sink: s.offsetName, Topic: last.Topic, Partition: last.Partition, NextOffset: last.Offset + 1}
}

// apply dead-letters a prepared batch's bad records and applies the rest. It returns only once
// every record is applied, filtered or dead-lettered.
func (s *Sink) apply(ctx context.Context, p *prepared) (Counts, error) {
	path := observe.PathRecords
	if p.rows != nil {
		start := time.Now()
		done, err := s.load(ctx, p)
		switch {
		case err != nil:
			return Counts{}, err
		case done:
			return s.report(p, observe.PathRows, p.loaded, 0, start), nil
		}
		if p, err = s.prepareRecords(ctx, p.recs); err != nil {
			return Counts{}, err
		}
		path = observe.PathFallback
	}
	for _, b := range p.bad {
		if err := s.dlq.send(ctx, b.rec, b.reason); err != nil {
			return Counts{}, err
		}
	}
	batch, dlq := p.batch, len(p.bad)
	start := time.Now()
	rejected, err := s.applyBatch(ctx, batch, p.recs)
	if err != nil {
		return Counts{}, err
	}
	return s.report(p, path, len(batch.Records)-rejected, dlq+rejected, start), nil
}

// report counts, measures and logs an applied batch, which took path (observe.PathRows, …).
func (s *Sink) report(p *prepared, path string, applied, dlq int, start time.Time) Counts {
	s.stats.add(applied, p.filtered, dlq)
	s.metrics.BatchPath(s.cfg.Name, path)
	s.metrics.Batch(s.cfg.Name, applied, p.filtered, dlq, time.Since(start), p.commits)
	s.log.Info("applied batch", zap.String("topic", p.batch.Topic), zap.Int32("partition", p.batch.Partition),
		zap.Int("records", len(p.recs)), zap.Int("applied", applied), zap.Int("filtered", p.filtered),
		zap.Int("dead_lettered", dlq), zap.Int64("next_offset", p.batch.NextOffset))
	return Counts{Records: len(p.recs), Applied: applied, Filtered: p.filtered, DeadLettered: dlq}
}

// commitTimes returns when each record's change was committed in the warehouse.
func commitTimes(records []Record) []time.Time {
	out := make([]time.Time, 0, len(records))
	for _, r := range records {
		if r.Event != nil && r.Event.Source.TsMs > 0 {
			out = append(out, time.UnixMilli(r.Event.Source.TsMs))
		}
	}
	return out
}
