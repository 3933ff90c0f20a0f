package sink

// Apply with retry: one batch to the connector, under the sink's rate limit and the partition's
// fence, retried with backoff for as long as the target is unavailable.

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
)

// applyEmpty still records the offset in targets that store it, so filtered or dead-lettered
// runs are not read again after a restart.
func (s *Sink) applyEmpty(ctx context.Context, b *Batch) error {
	if _, ok := s.conn.(OffsetStore); !ok {
		return nil
	}
	return s.applyWithRetry(ctx, b)
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
			done = s.waits.begin(b.Topic, b.Partition, err.Error())
		}
		s.waits.note(tp, err.Error(), RetryDelay(err) >= longPause)
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
