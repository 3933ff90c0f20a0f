package sink

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// GroupShare is the part of a sink's rate limit and API budgets one member of its group takes:
// the partitions it holds over all partitions of the sink's topics, so that the members together
// never take more than the whole. A member without partitions sends nothing: its share is 0. With
// the total unknown, a member takes the whole, as a lone member would.
func GroupShare(held, total int) float64 {
	if total <= 0 {
		return 1
	}
	return min(1, float64(max(held, 0))/float64(total))
}

// groupRate is a sink's rate_limit: records per second and burst for the whole group.
type groupRate struct {
	perSec float64
	burst  int
}

// member is the limiter's rate and burst for a member's share. The burst is scaled too, so the
// members' bursts together stay within the sink's; it is at least 1. A member without partitions
// keeps one partition's part of the rate rather than 0: it sends nothing, except a batch still in
// hand when its partitions were lost, which must not wait forever on a limit of 0.
func (g groupRate) member(share float64, total int) (rate.Limit, int) {
	f := share
	if total > 0 {
		f = max(f, 1/float64(total))
	}
	return rate.Limit(g.perSec * f), max(1, int(math.Round(float64(g.burst)*f)))
}

// heldPartitions follows the partitions this member holds, through the group's rebalance
// callbacks, and scales the sink's rate limit and its connector's budgets to the member's share
// whenever it changes.
type heldPartitions struct {
	s     *Sink
	mu    sync.Mutex
	held  map[TopicPartition]bool
	total int     // partitions of the sink's topics, as last listed
	share float64 // as last applied; -1 before the first
}

func newHeldPartitions(s *Sink) *heldPartitions {
	return &heldPartitions{s: s, held: map[TopicPartition]bool{}, share: -1}
}

// add is called with the partitions the member was just assigned (see adjustOffsets); the total
// is listed again each time, so partitions added to a topic count from the next assignment.
func (h *heldPartitions) add(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for t, ps := range assigned {
		for _, p := range ps {
			h.held[TopicPartition{Topic: t, Partition: p}] = true
		}
	}
	h.countTotal(ctx, cl)
	h.apply()
}

// drop is the OnPartitionsRevoked and OnPartitionsLost callback.
func (h *heldPartitions) drop(_ context.Context, _ *kgo.Client, dropped map[string][]int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for t, ps := range dropped {
		for _, p := range ps {
			delete(h.held, TopicPartition{Topic: t, Partition: p})
		}
	}
	h.apply()
}

// countTotal lists the partitions of the sink's topics; on failure the last count stays (and
// before any count the member takes the whole, see GroupShare). h.mu is held.
func (h *heldPartitions) countTotal(ctx context.Context, cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, h.s.topics...)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		h.s.log.Warn("cannot count the partitions of the sink's topics; the share of the rate limit stays as it was",
			zap.Strings("topics", h.s.topics), zap.Error(err))
		return
	}
	total := 0
	for _, t := range topics {
		total += len(t.Partitions)
	}
	h.total = total
}

// apply sets the member's share, when it changed, on the limiter and the connector. h.mu is held.
func (h *heldPartitions) apply() {
	share := GroupShare(len(h.held), h.total)
	if share == h.share {
		return
	}
	h.share = share
	s := h.s
	if s.limiter != nil {
		limit, burst := s.rate.member(share, h.total)
		s.limiter.SetLimit(limit)
		s.limiter.SetBurst(burst)
	}
	if gs, ok := s.conn.(GroupShared); ok {
		gs.SetGroupShare(share)
	}
	s.metrics.GroupShare(s.cfg.Name, share)
	s.log.Info("share of the sink's rate limit and API budgets", zap.Int("partitions", len(h.held)),
		zap.Int("of", h.total), zap.Float64("share", share), zap.Float64("records_per_s", float64(s.limiterLimit())))
}

// limiterLimit is the limiter's current rate, or 0 without a rate_limit.
func (s *Sink) limiterLimit() rate.Limit {
	if s.limiter == nil {
		return 0
	}
	return s.limiter.Limit()
}
