package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
)

// applyBatch applies a batch with retries and bisection and returns how many records were
// dead-lettered. Transient failures retry the same batch with exponential backoff and jitter for
// as long as it takes (the partition waits, so order is kept). A permanent failure splits the
// batch in halves until the records at fault are found; those go to the dead-letter topic and
// every other record is applied.
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
		case errors.As(err, &partial):
			if err := s.deadLetterFailed(ctx, cur, partial); err != nil {
				return rejected, err
			}
			rejected += len(partial.Failed)
		case len(cur.Records) == 1:
			if err := s.dlq.sendRecord(ctx, cur.Records[0], "apply: "+err.Error()); err != nil {
				return rejected, err
			}
			rejected++
		default:
			half := len(cur.Records) / 2
			left, right := *cur, *cur
			left.Records, right.Records = cur.Records[:half], cur.Records[half:]
			pending = append([]*Batch{&left, &right}, pending...)
		}
	}
	return rejected, nil
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
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		err := s.conn.Apply(ctx, b)
		switch {
		case err == nil:
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

func (s *Sink) deadLetterFailed(ctx context.Context, b *Batch, p *PartialError) error {
	for _, f := range p.Failed {
		if f.Index < 0 || f.Index >= len(b.Records) {
			return fmt.Errorf("connector reported a failure for record %d of a %d-record batch", f.Index, len(b.Records))
		}
		if err := s.dlq.sendRecord(ctx, b.Records[f.Index], "apply: "+f.Reason); err != nil {
			return err
		}
	}
	return nil
}
