package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// applyBatch applies a batch with retries and bisection and returns how many records were
// dead-lettered. Transient failures retry the same batch with exponential backoff and jitter for
// as long as it takes (the partition waits, so order is kept, and a target that is down as a
// whole loses nothing however long it is down). A permanent failure splits the batch in halves
// until the records at fault are found; each of those is retried on its own under the sink's
// retry policy (settleRecord) and dead-lettered once the policy gives up; every other record is
// applied.
func (s *Sink) applyBatch(ctx context.Context, b *Batch) (int, error) {
	if len(b.Records) == 0 {
		return 0, s.applyEmpty(ctx, b)
	}
	pending := []*Batch{b}
	rejected := 0
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
				dropped, err := s.settleRecord(ctx, one, reasons[i], b.NextOffset, rest)
				if err != nil {
					return rejected, err
				}
				if dropped {
					rejected++
				}
			}
		case len(cur.Records) == 1:
			dropped, err := s.settleRecord(ctx, cur, err.Error(), b.NextOffset, pending)
			if err != nil {
				return rejected, err
			}
			if dropped {
				rejected++
			}
		default:
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
func (s *Sink) settleRecord(ctx context.Context, b *Batch, reason string, next int64, pending []*Batch) (bool, error) {
	maxAttempts, maxElapsed := s.retryPolicy()
	r := b.Records[0]
	defer s.waits.begin(b.Topic, b.Partition)()
	first := time.Now()
	bo := transientBackOff()
	for attempt := 1; ; attempt++ {
		left := maxElapsed - time.Since(first)
		if attempt >= maxAttempts || left <= 0 {
			if attempt > 1 {
				reason = fmt.Sprintf("%s (rejected %d times in %s)", reason, attempt, time.Since(first).Round(time.Millisecond))
			}
			return true, s.dlq.sendRecord(ctx, r, "apply: "+reason)
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

// applyEmpty still records the offset in targets that store it, so filtered or dead-lettered
// runs are not read again after a restart.
func (s *Sink) applyEmpty(ctx context.Context, b *Batch) error {
	if _, ok := s.conn.(OffsetStore); !ok {
		return nil
	}
	return s.applyWithRetry(ctx, b)
}

func resumeOffset(pending []*Batch, next int64) int64 {
	for _, p := range pending {
		for _, r := range p.Records {
			next = min(next, r.Offset)
		}
	}
	return next
}

// applyWithRetry applies one batch, retrying transient errors; it returns nil, a *PartialError,
// or a permanent error.
func (s *Sink) applyWithRetry(ctx context.Context, b *Batch) error {
	if err := s.wait(ctx, len(b.Records)); err != nil {
		return err
	}
	attempt := 0
	tp := TopicPartition{b.Topic, b.Partition}
	done := func() {}
	defer func() { done() }()
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		b.Fence = s.fences.get(tp)
		err := s.conn.Apply(ctx, b)
		switch {
		case err == nil:
			s.fences.applied(tp, b.NextOffset)
			return struct{}{}, nil
		case !IsRetryable(err):
			return struct{}{}, backoff.Permanent(err)
		}
		if d := RetryDelay(err); d > 0 {
			s.notePause(d, err)
			return struct{}{}, backoff.RetryAfter(int((d + time.Second - 1) / time.Second))
		}
		return struct{}{}, err
	}, backoff.WithBackOff(transientBackOff()), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		if attempt == 1 { // the partition waits on its target from now on: not a stall
			done = s.waits.begin(b.Topic, b.Partition)
		}
		s.metrics.Retry(s.cfg.Name)
		s.log.Warn("target unavailable; retrying the batch", zap.String("topic", b.Topic),
			zap.Int32("partition", b.Partition), zap.Int("attempt", attempt), zap.Duration("in", d), zap.Error(err))
	}))
	s.metrics.Paused(s.cfg.Name, time.Time{}, "")
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// transientBackOff is how a partition waits out an unavailable target or schema source: quick
// retries at first (most blips last a second), then at most every 30 seconds, with jitter so that
// partitions and workers do not retry in step.
func transientBackOff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 30*time.Second
	return bo
}

// longPause is a wait long enough to show as a pause in logs, metrics and status.
const longPause = time.Minute

// notePause makes a long server-given wait (a daily API limit) visible.
func (s *Sink) notePause(d time.Duration, err error) {
	if d < longPause {
		return
	}
	until := time.Now().Add(d)
	s.metrics.Paused(s.cfg.Name, until, err.Error())
	s.log.Warn("target asked to wait; sink paused", zap.Time("until", until), zap.Error(err))
}

// wait applies the sink's rate limit to n records.
func (s *Sink) wait(ctx context.Context, n int) error {
	if s.limiter == nil {
		return nil
	}
	for n > 0 {
		k := min(n, s.limiter.Burst())
		if err := s.limiter.WaitN(ctx, k); err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
		n -= k
	}
	return nil
}
