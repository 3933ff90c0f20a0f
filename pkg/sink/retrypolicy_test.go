package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// rejectCounter is a memTarget that counts how often it rejected a record with a negative v: in
// every Apply with partial results, and in one-record batches otherwise (bisection's larger
// batches are not tries of that record alone).
type rejectCounter struct {
	*memTarget
	rejections atomic.Int32
}

func (c *rejectCounter) Apply(ctx context.Context, b *sink.Batch) error {
	for _, r := range b.Records {
		if v, _ := r.Fields["v"].(int32); v < 0 && (c.partial || len(b.Records) == 1) {
			c.rejections.Add(1)
		}
	}
	return c.memTarget.Apply(ctx, b)
}

// TestRejectedRecordIsDeadLetteredAfterMaxAttempts: a record the target keeps rejecting is tried
// retry.max_attempts times, then dead-lettered with the count in its reason, and the records
// behind it, of its own key too, are applied.
func TestRejectedRecordIsDeadLetteredAfterMaxAttempts(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			h := newHarness(t)
			var evs []*change.Event
			for id := int32(1); id <= 30; id++ {
				evs = append(evs, upsert(id, id, "first"))
			}
			h.produce(evs...)
			h.produce(upsert(7, -7, "rejected"))
			target := &rejectCounter{memTarget: newMemTarget()}
			target.partial = partial
			h.start(h.sinkConfig(func(s *config.Sink) {
				s.Batch.MaxRecords = 10
				s.Retry = config.Retry{MaxAttempts: 4, MaxElapsed: time.Minute}
			}), target)
			// Later changes, of its key too, come once it is being retried: in one batch with it
			// they would replace it before it reached the target.
			waitFor(t, "the first rejection", func() bool { return target.rejections.Load() > 0 })
			h.produce(upsert(8, 80, "after"), upsert(7, 70, "after"))
			end := h.endOffsets()
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			if n := target.rejections.Load(); n != 4 {
				t.Errorf("the record was rejected %d times, want retry.max_attempts = 4", n)
			}
			dlq := h.dlq("s1")
			if len(dlq) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dlq))
			}
			if reason := header(dlq[0], sink.HeaderReason); !strings.HasPrefix(reason, "apply: ") || !strings.Contains(reason, "rejected 4 times") {
				t.Errorf("reason %q does not say how often the record was rejected", reason)
			}
			rows := target.snapshot()
			if len(rows) != 30 || rows["7"]["v"] != int32(70) || rows["8"]["v"] != int32(80) {
				t.Errorf("rows after the rejected record: 7=%v 8=%v (%d rows)", rows["7"], rows["8"], len(rows))
			}
		})
	}
}

// downTarget is a memTarget that is unreachable until up is closed.
type downTarget struct {
	*memTarget
	up    chan struct{}
	tries atomic.Int32
}

func (d *downTarget) Apply(ctx context.Context, b *sink.Batch) error {
	select {
	case <-d.up:
		return d.memTarget.Apply(ctx, b)
	default:
		d.tries.Add(1)
		return sink.Retryable(errors.New("dial tcp 10.0.0.9:5432: connect: connection refused"))
	}
}

// TestTargetDownLongerThanMaxElapsedLosesNothing: a target that refuses every batch for longer
// than retry.max_elapsed, and more often than retry.max_attempts, holds its partitions; nothing is
// dead-lettered or committed meanwhile, and once it is back every record is applied.
func TestTargetDownLongerThanMaxElapsedLosesNothing(t *testing.T) {
	h := newHarness(t)
	for id := int32(1); id <= 20; id++ {
		h.produce(upsert(id, id, "a"))
	}
	h.produce(upsert(3, 33, "b"))
	target := &downTarget{memTarget: newMemTarget(), up: make(chan struct{})}
	h.start(h.sinkConfig(func(s *config.Sink) { s.Retry = config.Retry{MaxAttempts: 2, MaxElapsed: 100 * time.Millisecond} }), target)
	waitFor(t, "the sink to meet the outage", func() bool { return target.tries.Load() >= 6 })
	time.Sleep(800 * time.Millisecond) // well past max_elapsed
	if c := h.committed("s1"); c > 0 {
		t.Errorf("offsets moved to %d while the target was down", c)
	}
	close(target.up)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	if n := len(h.dlq("s1")); n != 0 {
		t.Errorf("%d dead letters after an outage, want none", n)
	}
	rows := target.snapshot()
	if len(rows) != 20 || rows["3"]["v"] != int32(33) {
		t.Errorf("%d rows after the outage (3=%v), want all 20 with their last values", len(rows), rows["3"])
	}
}
