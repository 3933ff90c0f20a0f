package sink

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Fencing keeps a worker that has lost a partition from writing to the target for it again.
//
// A worker loses a partition while it still applies records of it when a rebalance removes it
// from the group (its apply outlasted the rebalance timeout) or when its session expires (a
// network partition). The new owner starts again from the last commit and goes on with newer
// changes; a late write of the old one would land over them. Three guards stop it:
//
//   - Deadline: once a rebalance waits for this worker, its in-flight applies get until shortly
//     before the rebalance timeout (rebalanceWatch); then they are cancelled, the round is
//     abandoned uncommitted, and the worker rejoins. The rebalance timeout is at least the
//     longest apply a connector declares (LongApplier), so only a stuck apply is cut.
//   - Stored offsets: an OffsetStore writes a batch's next offset only if the target still holds
//     the offset this worker holds (Batch.Fence.Offset), in the same transaction as the rows; a
//     worker whose store moved under it is refused with ErrFenced and rejoins.
//   - Epochs: targets without offsets that can check a token atomically (Redis) refuse writes of
//     a partition from a worker assigned it in an older group generation.
//
// Invariant: fences holds, for each partition this worker owns, the Fence its next batch must
// carry; a partition it does not own has none (Held false).
type fences struct {
	mu   sync.Mutex
	held map[TopicPartition]Fence
}

// assign records that the worker was assigned tp in group generation epoch, with the target
// storing next (-1: nothing stored, or a target that stores no offsets).
func (f *fences) assign(tp TopicPartition, next int64, epoch int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = map[TopicPartition]Fence{}
	}
	f.held[tp] = Fence{Held: true, Offset: next, Epoch: epoch}
}

// get returns the fence of tp's next batch.
func (f *fences) get(tp TopicPartition) Fence {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[tp]
}

// applied moves tp's fence past a batch the target took: the target now stores next.
func (f *fences) applied(tp TopicPartition, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fc, ok := f.held[tp]; ok {
		fc.Offset = next
		f.held[tp] = fc
	}
}

// drop forgets partitions the worker no longer owns.
func (f *fences) drop(gone map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, parts := range gone {
		for _, p := range parts {
			delete(f.held, TopicPartition{t, p})
		}
	}
}

// errRebalanceDeadline cancels the applies of a round that a waiting rebalance cannot wait for
// any longer.
var errRebalanceDeadline = errors.New("a rebalance waited for this worker's applies until shortly before its timeout")

// rebalanceWatch cancels in-flight applies when a rebalance has waited for this worker for
// budget: past the rebalance timeout the group gives the worker's partitions to others, and
// whatever it wrote afterwards would land over their writes.
type rebalanceWatch struct {
	budget  time.Duration
	cancel  context.CancelCauseFunc
	waiting atomic.Bool   // a rebalance waits for this worker (OnPartitionsCallbackBlocked)
	episode atomic.Uint64 // bumped whenever the worker lets rebalances through
}

// blocked is called when a rebalance starts to wait for this worker.
func (w *rebalanceWatch) blocked() {
	if w.waiting.Swap(true) {
		return
	}
	ep := w.episode.Load()
	time.AfterFunc(w.budget, func() {
		if w.waiting.Load() && w.episode.Load() == ep {
			w.cancel(errRebalanceDeadline)
		}
	})
}

// released is called when the worker lets rebalances through.
func (w *rebalanceWatch) released() {
	w.episode.Add(1)
	w.waiting.Store(false)
}

// rebalanceBudget is how long in-flight applies may run once a rebalance waits for the worker:
// the rebalance timeout, less the heartbeat interval (the worker learns of a rebalance at its
// next heartbeat) and a margin to cancel and rejoin.
func rebalanceBudget(rebalance, heartbeat time.Duration) time.Duration {
	margin := max(rebalance/10, 500*time.Millisecond)
	return max(rebalance-heartbeat-margin, rebalance/4)
}

// rebalanceTimeout is the group's rebalance timeout: the session timeout, or longer when the
// connector says one apply may take longer.
func rebalanceTimeout(session time.Duration, conn Connector) time.Duration {
	la, ok := conn.(LongApplier)
	if !ok {
		return session
	}
	return max(session, la.MaxApply()+session/2)
}
