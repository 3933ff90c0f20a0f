package connector

import (
	"errors"
	"fmt"
	"time"
)

// The error contract: what a connector's Apply returns tells the runtime whether to retry the
// batch (Retryable, RetryAfter), retry and dead-letter single records (PartialError), bisect the
// batch (any other error), or leave the partition to another worker (ErrFenced).

// ErrFenced is returned (wrapped) by a connector whose target shows that another worker has
// written the batch's partition since this worker's Fence was taken. Nothing of the batch was
// written. The runtime neither retries nor dead-letters it: the worker rejoins its group and
// starts again from what the target stores.
var ErrFenced = errors.New("fenced: another worker has written this partition since this one was assigned it")

// ErrOffsetsNotKept is returned (wrapped) by an OffsetStore's Offsets when the target holds what
// the sink wrote but no offsets, because it started keeping them after it was written to (a
// version that did not): the runtime then goes on from the consumer group's commits, instead of
// taking the missing offsets for a target that lost its data.
var ErrOffsetsNotKept = errors.New("the target keeps no offsets for this sink yet")

// RecordError is the failure of one record of a batch, the others being applied.
type RecordError struct {
	Index  int    // index in Batch.Records
	Reason string // what the target said, for the DLQ
}

// PartialError says which records of a batch the target rejected; the others were applied. The
// runtime retries each rejected record on its own under the sink's retry policy, then
// dead-letters it.
type PartialError struct {
	Failed []RecordError
}

func (e *PartialError) Error() string {
	if len(e.Failed) == 0 {
		return "partial failure"
	}
	return fmt.Sprintf("%d record(s) rejected, first: %s", len(e.Failed), e.Failed[0].Reason)
}

// retryable marks an error a retry may fix.
type retryable struct {
	err   error
	after time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// Retryable marks err as transient: the runtime retries the batch with backoff, keeping order.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryable{err: err}
}

// RetryAfter marks err as transient with a server-given wait (e.g. HTTP 429 Retry-After).
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryable{err: err, after: d}
}

// IsRetryable reports whether err, or an error it wraps, was marked with Retryable or RetryAfter.
func IsRetryable(err error) bool {
	var r *retryable
	return errors.As(err, &r)
}

// RetryDelay returns the server-given wait of a RetryAfter error, or 0.
func RetryDelay(err error) time.Duration {
	var r *retryable
	if errors.As(err, &r) {
		return r.after
	}
	return 0
}
