package capture

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// tracker follows every record handed to Kafka in emission order and releases a WAL position only
// when every record emitted before it has been acknowledged. Kafka acknowledges per partition, so
// acks arrive out of order; the slot must never be confirmed past an unacknowledged record.
//
// Records get consecutive sequence numbers. A barrier (a transaction's end LSN) is placed after the
// records of its transaction; it is released once the lowest unacknowledged sequence is past it.
// The number of records in flight is capped, which gives capture its backpressure.
type tracker struct {
	mu       sync.Mutex
	acked    []bool // ring indexed by seq % len
	head     uint64 // lowest sequence not yet acknowledged
	next     uint64 // sequence of the next record
	barriers []barrier
	released pglogrepl.LSN
	// settled is the seq below which everything was acknowledged when nothing was in flight or a
	// barrier was released: what a restart may send again starts about there.
	settled uint64
	err     error
	changed chan struct{} // closed and replaced whenever head moves or an error is set, once taken
	// taken says a waiter holds changed: only then does a move need a new channel (acks come
	// per record, and most find nobody waiting).
	taken bool
}

type barrier struct {
	seq uint64 // every record below seq must be acknowledged
	lsn pglogrepl.LSN
}

func newTracker(capacity int) *tracker {
	if capacity < 1 {
		capacity = 1
	}
	return &tracker{acked: make([]bool, capacity), changed: make(chan struct{})}
}

// reserve returns the sequence for a new record, waiting while the tracker is full. onWait runs
// every time the wait wakes up without room, so the caller can keep the replication connection
// alive (status updates) while Kafka is slow or away.
func (t *tracker) reserve(ctx context.Context, wake <-chan time.Time, onWait func() error) (uint64, error) {
	for {
		t.mu.Lock()
		if t.err != nil {
			err := t.err
			t.mu.Unlock()
			return 0, err
		}
		if t.next-t.head < uint64(len(t.acked)) {
			seq := t.next
			t.acked[seq%uint64(len(t.acked))] = false
			t.next++
			t.mu.Unlock()
			return seq, nil
		}
		changed := t.take()
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-changed:
		case <-wake:
			if err := onWait(); err != nil {
				return 0, err
			}
		}
	}
}

// ack records Kafka's answer for seq. A produce error is kept and returned by every later call:
// capture must stop and restart from the slot rather than skip a record. A record Kafka refuses
// for good is not an error here: the emitter acknowledges its seq once its dead letter is in
// Kafka instead, so the slot moves past it only then.
func (t *tracker) ack(seq uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.err == nil {
			t.err = fmt.Errorf("kafka did not accept a record: %w", err)
			t.signal()
		}
		return
	}
	t.acked[seq%uint64(len(t.acked))] = true
	if seq != t.head {
		return
	}
	for t.head < t.next && t.acked[t.head%uint64(len(t.acked))] {
		t.head++
	}
	if t.head == t.next {
		t.settled = t.head
	}
	t.releaseBarriers()
	t.signal()
}

// barrier marks that lsn may be confirmed once every record emitted so far is acknowledged.
func (t *tracker) barrier(lsn pglogrepl.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.barriers = append(t.barriers, barrier{seq: t.next, lsn: lsn})
	t.releaseBarriers()
}

func (t *tracker) releaseBarriers() {
	i := 0
	for ; i < len(t.barriers) && t.barriers[i].seq <= t.head; i++ {
		if t.barriers[i].lsn > t.released {
			t.released = t.barriers[i].lsn
		}
		t.settled = max(t.settled, t.barriers[i].seq)
	}
	if i > 0 {
		t.barriers = append(t.barriers[:0], t.barriers[i:]...)
	}
}

// signal wakes the waiters, if any. Called with mu held.
func (t *tracker) signal() {
	if !t.taken {
		return
	}
	close(t.changed)
	t.changed, t.taken = make(chan struct{}), false
}

// take returns the channel signal closes next. Called with mu held.
func (t *tracker) take() chan struct{} {
	t.taken = true
	return t.changed
}

// position returns the highest releasable LSN, whether nothing at all is in flight (every record
// acknowledged and every barrier released), and the first produce error.
func (t *tracker) position() (lsn pglogrepl.LSN, idle bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.released, t.head == t.next && len(t.barriers) == 0, t.err
}

// pending returns the number of records emitted since the tracker last settled: about what a
// restart sends again.
func (t *tracker) pending() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next - t.settled
}

// nextSeq returns the sequence the next record will get.
func (t *tracker) nextSeq() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next
}

// ackedBelow reports whether every record before seq has been acknowledged.
func (t *tracker) ackedBelow(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.head >= seq
}

// full says whether reserve would wait for room now.
func (t *tracker) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next-t.head >= uint64(len(t.acked))
}

// inFlight returns the number of records not yet acknowledged.
func (t *tracker) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.next - t.head)
}

// drain waits until every record emitted so far is acknowledged.
func (t *tracker) drain(ctx context.Context) error {
	return t.wait(ctx, nil, nil)
}

// wait is drain that, like reserve, runs onWait every time wake fires, so the replication
// connection stays alive while the records ahead are acknowledged.
func (t *tracker) wait(ctx context.Context, wake <-chan time.Time, onWait func() error) error {
	for {
		t.mu.Lock()
		done, err := t.head == t.next, t.err
		var changed chan struct{}
		if err == nil && !done {
			changed = t.take()
		}
		t.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-wake:
			if err := onWait(); err != nil {
				return err
			}
		}
	}
}
