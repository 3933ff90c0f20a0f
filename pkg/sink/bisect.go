package sink

// Bisect and dead-letter: a batch the target refuses as a whole is split until the records at
// fault are found; each is retried on its own under the sink's retry policy, then sent to the
// dead-letter topic, and every other record is applied.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// applyBatch applies a batch with retries and bisection and returns how many records were
// dead-lettered. Transient failures retry the same batch with exponential backoff and jitter for
// as long as it takes (the partition waits, so order is kept, and a target that is down as a
// whole loses nothing however long it is down). A permanent failure splits the batch in halves
// until the records at fault are found; each of those is retried on its own under the sink's
// retry policy (settleRecord) and dead-lettered once the policy gives up; every other record is
// applied. read are the Kafka records the batch was prepared from: a dead letter is the record
// as it was read (see readRecord).
func (s *Sink) applyBatch(ctx context.Context, b *Batch, read []*kgo.Record) (int, error) {
	if len(b.Records) == 0 {
		return 0, s.applyEmpty(ctx, b)
	}
	pending := []*Batch{b}
	rejected, split := 0, false
	for len(pending) > 0 {
		cur := pending[0]
		pending = pending[1:]
		// A part applied before the rest must not record the whole batch's offset in the target:
		// a crash in between would skip the rest. It records the first offset still to apply.
		cur.NextOffset = resumeOffset(pending, b.NextOffset)
		err := s.applyWithRetry(ctx, cur)
		var partial *PartialError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return rejected, ctx.Err() // stopping: no failure of the records, nothing to bisect
		case errors.Is(err, ErrFenced):
			return rejected, err // another worker owns the partition: nothing to bisect either
		case errors.As(err, &partial):
			singles, reasons, err := rejectedRecords(cur, partial)
			if err != nil {
				return rejected, err
			}
			for i, one := range singles {
				rest := append(slices.Clip(singles[i+1:]), pending...)
				dropped, err := s.settleRecord(ctx, one, read, reasons[i], b.NextOffset, rest)
				if err != nil {
					return rejected, err
				}
				if dropped {
					rejected++
				}
			}
		case len(cur.Records) == 1:
			dropped, err := s.settleRecord(ctx, cur, read, err.Error(), b.NextOffset, pending)
			if err != nil {
				return rejected, err
			}
			if dropped {
				rejected++
			}
		default:
			if !split {
				split = true
				s.metrics.BatchPath(s.cfg.Name, observe.PathBisect)
			}
			half := len(cur.Records) / 2
			left, right := *cur, *cur
			left.Records, right.Records = cur.Records[:half], cur.Records[half:]
			pending = append([]*Batch{&left, &right}, pending...)
		}
	}
	return rejected, nil
}

// rejectedRecords returns the records of a partly applied batch that the target rejected, each
// as a batch of its own, in the batch's order, and what the target said about each.
func rejectedRecords(b *Batch, p *PartialError) ([]*Batch, []string, error) {
	failed := slices.Clone(p.Failed)
	for _, f := range failed {
		if f.Index < 0 || f.Index >= len(b.Records) {
			return nil, nil, fmt.Errorf("connector reported a failure for record %d of a %d-record batch", f.Index, len(b.Records))
		}
	}
	slices.SortStableFunc(failed, func(x, y RecordError) int { return x.Index - y.Index })
	failed = slices.CompactFunc(failed, func(x, y RecordError) bool { return x.Index == y.Index })
	out, reasons := make([]*Batch, len(failed)), make([]string, len(failed))
	for i, f := range failed {
		one := *b
		one.Records = b.Records[f.Index : f.Index+1]
		out[i], reasons[i] = &one, f.Reason
	}
	return out, reasons, nil
}

// Defaults of the retry policy for a sink whose config did not go through config.ApplyDefaults
// (tests, embedders): the same as the config's.
var (
	defaultRetryAttempts = config.DefaultRetryMaxAttempts
	defaultRetryElapsed  = config.DefaultRetryMaxElapsed
)

// retryPolicy returns how many times, and for how long, a record the target rejects is tried
// before it is dead-lettered. A re-drive of the dead-letter topic (CollectFailures) tries once:
// it reports what still fails, and the operator runs it again.
func (s *Sink) retryPolicy() (attempts int, elapsed time.Duration) {
	if s.collect {
		return 1, 0
	}
	attempts, elapsed = s.cfg.Retry.MaxAttempts, s.cfg.Retry.MaxElapsed
	if attempts <= 0 {
		attempts = defaultRetryAttempts
	}
	if elapsed <= 0 {
		elapsed = defaultRetryElapsed
	}
	return attempts, elapsed
}

// settleRecord handles a one-record batch the target rejected with reason: it retries the record
// on its own, with backoff, until the target takes it or it has failed retry.max_attempts times
// or for retry.max_elapsed, and then dead-letters it. A lock, a deadlock or a parent row that
// another partition has not written yet clears within a few attempts; a record the target can
// never take holds its partition only that long. A retry that meets a transient error waits for
// the target like any batch (applyWithRetry) and is not counted: a target that goes down while a
// record is being retried makes nothing go to the dead-letter topic. It reports whether the
// record was dead-lettered.
func (s *Sink) settleRecord(ctx context.Context, b *Batch, read []*kgo.Record, reason string, next int64, pending []*Batch) (bool, error) {
	maxAttempts, maxElapsed := s.retryPolicy()
	r := b.Records[0]
	defer s.waits.begin(b.Topic, b.Partition, "")()
	first := time.Now()
	bo := transientBackOff()
	for attempt := 1; ; attempt++ {
		left := maxElapsed - time.Since(first)
		if attempt >= maxAttempts || left <= 0 {
			if attempt > 1 {
				reason = fmt.Sprintf("%s (rejected %d times in %s)", reason, attempt, time.Since(first).Round(time.Millisecond))
			}
			return true, s.dlq.sendRecord(ctx, r, read, "apply: "+reason)
		}
		d := min(bo.NextBackOff(), left) // the last attempt comes when max_elapsed ends
		s.metrics.Retry(s.cfg.Name)
		s.log.Warn("target rejected a record; retrying it", zap.String("topic", r.Topic), zap.Int32("partition", r.Partition),
			zap.Int64("offset", r.Offset), zap.Int("attempt", attempt), zap.Int("max_attempts", maxAttempts),
			zap.Duration("in", d), zap.String("reason", reason))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false, ctx.Err()
		}
		b.NextOffset = resumeOffset(pending, next)
		err := s.applyWithRetry(ctx, b)
		var partial *PartialError
		switch {
		case err == nil:
			return false, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, ErrFenced):
			return false, err
		case errors.As(err, &partial) && len(partial.Failed) > 0:
			reason = partial.Failed[0].Reason
		default:
			reason = err.Error()
		}
	}
}

func resumeOffset(pending []*Batch, next int64) int64 {
	for _, p := range pending {
		for _, r := range p.Records {
			next = min(next, r.Offset)
		}
	}
	return next
}
