package sink

// Rounds and commits: polled records by partition, applied partition by partition (the next
// round polled while one applies), and committed once a round is applied.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// TopicPartition names a partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Round is one poll's records by partition, each partition's in offset order. A partition may
// have no records (a replay's range that ends without records).
type Round map[TopicPartition][]*kgo.Record

// Size is the number of records in r.
func (r Round) Size() int {
	n := 0
	for _, recs := range r {
		n += len(recs)
	}
	return n
}

// Rounds is where ApplyRounds takes records from and reports progress to: the sink's consumer
// group in Run, a replay's offset ranges in package replay.
type Rounds interface {
	// Poll returns the next round; each partition's records follow its records of the round
	// before. With wait > 0 it waits at most that long for the first records and may return an
	// empty round; with 0 it waits until records come. io.EOF (with an empty round) means there
	// are no more rounds.
	Poll(ctx context.Context, wait time.Duration) (Round, error)
	// Commit is called once a round is applied, for rounds in order, with what applying it did.
	Commit(ctx context.Context, r Round, c Counts) error
	// Idle is called whenever no round is held: the consumer group lets rebalances through.
	Idle()
	// Ahead reports whether the next round may be polled while one is being applied.
	Ahead() bool
}

// ApplyRounds applies the rounds of src until src ends (nil), ctx ends or applying fails. On a
// backlog (full rounds) the next round is polled while the current one is applied, and each of
// its partitions starts as soon as that partition's records of the current round are applied, so
// that neither polls nor the slowest partition of a round leave the target idle. At most two
// rounds are held; a round is committed once all of it is applied. A round is polled ahead only
// when src allows it (no rebalance waiting for the group member), and waits at most max_wait for
// its first records, so an idle stream never holds a rebalance back.
func (s *Sink) ApplyRounds(ctx context.Context, src Rounds) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	defer func() {
		cancel()
		if werr := g.Wait(); err == nil || errors.Is(err, context.Canceled) && werr != nil {
			err = werr
		}
	}()
	sem := make(chan struct{}, s.Concurrency())
	var prev *applying
	for {
		var cur Round
		var perr error
		switch {
		case prev == nil:
			cur, perr = src.Poll(gctx, 0)
		case prev.round.Size() >= s.pollSize() && src.Ahead():
			cur, perr = src.Poll(gctx, s.cfg.Batch.MaxWait)
		}
		ended := errors.Is(perr, io.EOF)
		if perr != nil && !ended {
			return perr
		}
		var next *applying
		if len(cur) > 0 {
			next = s.start(g, gctx, sem, cur, prev)
		}
		if prev != nil {
			if err := s.finish(ctx, gctx, src, prev); err != nil {
				return err
			}
		}
		if prev = next; prev == nil {
			src.Idle()
			if ended {
				return nil
			}
		}
	}
}

// applying is a round whose partitions are being applied.
type applying struct {
	round  Round
	done   map[TopicPartition]chan struct{} // closed once that partition's records are applied
	counts map[TopicPartition]*Counts
}

// start applies a round's partitions in g, at most concurrency at once, each after the same
// partition's records of prev (the round before, or nil) are applied.
func (s *Sink) start(g *errgroup.Group, ctx context.Context, sem chan struct{}, r Round, prev *applying) *applying {
	a := &applying{round: r, done: make(map[TopicPartition]chan struct{}, len(r)), counts: make(map[TopicPartition]*Counts, len(r))}
	for tp, recs := range r {
		done, counts := make(chan struct{}), &Counts{}
		a.done[tp], a.counts[tp] = done, counts
		var after chan struct{}
		if prev != nil {
			after = prev.done[tp]
		}
		g.Go(func() error {
			if after != nil {
				select {
				case <-after:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			defer func() { <-sem }()
			c, err := s.Process(ctx, recs)
			if err != nil {
				return err
			}
			*counts = c
			close(done)
			return nil
		})
	}
	return a
}

// finish waits until a round is applied and commits it to src.
func (s *Sink) finish(ctx, gctx context.Context, src Rounds, a *applying) error {
	var total Counts
	for tp, done := range a.done {
		select {
		case <-done:
			total.Add(*a.counts[tp])
		case <-gctx.Done():
			return context.Cause(gctx)
		}
	}
	return src.Commit(ctx, a.round, total)
}

// groupRounds are the rounds of the sink's consumer group.
type groupRounds struct {
	s      *Sink
	cl     *kgo.Client
	watch  *rebalanceWatch // whether a rebalance waits for this member, and for how long
	behind *catchUp
	bar    *barriers
	hwm    map[TopicPartition]int64
}

// Poll gathers a round: it waits for the first records (at most wait when that is not 0), then
// takes what the client already holds and returns as soon as that runs dry, unless a partition
// of the round is behind its high watermark: on such a backlog it keeps polling until pollSize
// records are there or max_wait has passed. So a trickle is applied as it comes, and a backlog
// still forms full rounds. While it waits for the first records with nothing held, it commits
// the offsets the target is ahead at (see catchUp) and lets rebalances through.
func (g *groupRounds) Poll(ctx context.Context, wait time.Duration) (Round, error) {
	r, err := g.poll(ctx, wait)
	if err != nil {
		return nil, err
	}
	g.bar.polled(r)
	return r, nil
}

func (g *groupRounds) poll(ctx context.Context, wait time.Duration) (Round, error) {
	r := Round{}
	n, size := 0, g.s.pollSize()
	var deadline time.Time
	if wait > 0 {
		deadline = time.Now().Add(wait)
	}
	for n < size {
		dry := n > 0 && !g.backlog(r)
		if !dry && !deadline.IsZero() && time.Until(deadline) <= 0 {
			return r, nil
		}
		got, err := g.pollOnce(ctx, r, size-n, deadline, dry)
		if err != nil {
			return nil, err
		}
		n += got
		if dry && got == 0 {
			return r, nil // nothing more buffered, nothing more at the broker: apply now
		}
		if n == 0 && deadline.IsZero() {
			// Nothing came, and nothing is held. A poll that ends by its context blocks
			// rebalances like one that returned records: commit what the target is ahead at
			// while the partitions are surely this member's, then let rebalances through.
			g.behind.commit(ctx, g.cl, g.s.log)
			g.Idle()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if n > 0 && (deadline.IsZero() || wait > 0) {
			deadline, wait = time.Now().Add(g.s.cfg.Batch.MaxWait), 0
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return r, nil
}

// pollOnce adds up to limit records to r and returns how many it added. With dry it takes only
// what the client already holds (a poll without a context never waits for a fetch); otherwise
// it waits until deadline, or when that is zero (no records yet) for idleWake.
func (g *groupRounds) pollOnce(ctx context.Context, r Round, limit int, deadline time.Time, dry bool) (int, error) {
	var fs kgo.Fetches
	if dry {
		fs = g.cl.PollRecords(nil, limit) //lint:ignore SA1012 a nil context drains what is buffered and never waits
	} else {
		if deadline.IsZero() { // waiting for the first records: wake up now and then
			deadline = time.Now().Add(idleWake)
		}
		pctx, cancel := context.WithDeadline(ctx, deadline)
		g.wakeAtBarrierNote(pctx, cancel)
		fs = g.cl.PollRecords(pctx, limit)
		cancel()
	}
	if err := fetchErr(fs, ctx); err != nil {
		return 0, err
	}
	g.bar.forgetRevoked()
	got := 0
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := TopicPartition{p.Topic, p.Partition}
		g.hwm[tp] = max(g.hwm[tp], p.HighWatermark)
		if recs := g.bar.cut(tp, p.Records); len(recs) > 0 {
			r[tp] = append(r[tp], recs...)
			got += len(recs)
		}
	})
	// The poll holds rebalances back: the partitions at a barrier are surely this member's.
	return got, g.bar.step(ctx, r)
}

// backlog reports whether a partition of r had records at the broker after those in r at its
// last fetch: only then is waiting for more worth the latency.
func (g *groupRounds) backlog(r Round) bool {
	for tp, recs := range r {
		if len(recs) > 0 && recs[len(recs)-1].Offset+1 < g.hwm[tp] {
			return true
		}
	}
	return false
}

// wakeAtBarrierNote ends a poll early when a note is read from the barrier topic while this
// member waits at a truncate: the partitions it holds may go on.
func (g *groupRounds) wakeAtBarrierNote(pctx context.Context, cancel context.CancelFunc) {
	if g.bar.log == nil || !g.bar.waiting() {
		return
	}
	changed := g.bar.log.changes()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-pctx.Done():
		}
	}()
}

// idleWake is how often a poll waiting for records wakes up to commit offsets the target is
// ahead at.
const idleWake = time.Second

// Commit commits the offsets after the round's last records to the group.
func (g *groupRounds) Commit(ctx context.Context, r Round, _ Counts) error {
	last := make([]*kgo.Record, 0, len(r))
	for _, recs := range r {
		last = append(last, recs[len(recs)-1])
	}
	if err := g.cl.CommitRecords(ctx, last...); err != nil {
		if lostMembership(err) {
			// Applied, but the partitions may be another member's by now: rejoin, and read them
			// again from what the group and the target hold. Applying again is idempotent.
			return fmt.Errorf("sink %s: commit offsets: %w: %w", g.s.cfg.Name, errLeftGroup, err)
		}
		return fmt.Errorf("sink %s: commit offsets: %w", g.s.cfg.Name, err)
	}
	for _, rec := range last {
		g.behind.passed(rec.Topic, rec.Partition, rec.Offset+1)
		g.s.metrics.ConsumerLag(g.s.cfg.Name, rec.Topic, rec.Partition, g.hwm[TopicPartition{rec.Topic, rec.Partition}]-rec.Offset-1)
	}
	return g.bar.committed(ctx, r)
}

// errLeftGroup is a commit refused because the group has moved on without this member.
var errLeftGroup = errors.New("the group no longer counts this worker as the owner of its partitions")

// lostMembership reports whether a commit was refused because this member's generation is over.
func lostMembership(err error) bool {
	return errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.UnknownMemberID) ||
		errors.Is(err, kerr.FencedInstanceID) || errors.Is(err, kerr.RebalanceInProgress)
}

// Idle lets a waiting rebalance through.
func (g *groupRounds) Idle() {
	g.s.metrics.Progress("sink/" + g.s.cfg.Name)
	g.watch.released()
	g.cl.AllowRebalance()
}

// Ahead is false while a rebalance waits for this member.
func (g *groupRounds) Ahead() bool { return !g.watch.waiting.Load() }
