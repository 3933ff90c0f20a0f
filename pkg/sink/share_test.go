package sink_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

func TestGroupShare(t *testing.T) {
	for _, tc := range []struct {
		held, total int
		want        float64
	}{
		{0, 0, 1}, // total unknown: the whole, as a lone member
		{3, 0, 1}, // likewise
		{0, 6, 0}, // no partitions: sends nothing
		{2, 6, 1.0 / 3},
		{6, 6, 1},
		{7, 6, 1},  // never more than the whole
		{-1, 6, 0}, // never negative
	} {
		if got := sink.GroupShare(tc.held, tc.total); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("GroupShare(%d, %d) = %v, want %v", tc.held, tc.total, got, tc.want)
		}
	}
}

func TestMemberRate(t *testing.T) {
	for _, tc := range []struct {
		perSec     float64
		burst      int
		share      float64
		total      int
		wantLimit  rate.Limit
		wantBurst  int
		reasonText string
	}{
		{600, 1000, 1, 6, 600, 1000, "alone"},
		{600, 1000, 0.5, 6, 300, 500, "half"},
		{600, 1000, 1.0 / 3, 3, 200, 333, "a third"},
		{600, 1000, 0, 6, 100, 167, "no partitions: one partition's part, never 0"},
		{600, 1000, 0, 0, 0, 1, "no partitions, total unknown: burst at least 1"},
		{10, 2, 0.1, 10, 1, 1, "burst at least 1"},
	} {
		limit, burst := sink.MemberRate(tc.perSec, tc.burst, tc.share, tc.total)
		if math.Abs(float64(limit-tc.wantLimit)) > 1e-9 || burst != tc.wantBurst {
			t.Errorf("%s: MemberRate(%v, %d, %v, %d) = %v, %d; want %v, %d", tc.reasonText, tc.perSec, tc.burst, tc.share,
				tc.total, limit, burst, tc.wantLimit, tc.wantBurst)
		}
	}
}

// sharingTarget is a memTarget that records the group share it is told.
type sharingTarget struct {
	*memTarget
	mu    sync.Mutex
	share float64
}

func (s *sharingTarget) SetGroupShare(f float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.share = f
}

func (s *sharingTarget) got() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.share
}

// TestRateLimitIsSharedByTheGroup: two workers of one sink with a rate_limit each take their
// share of it (their partitions over all partitions), tell their connector, take the whole once
// alone, and together apply no faster than the limit.
func TestRateLimitIsSharedByTheGroup(t *testing.T) {
	const perSec = 300
	h := newHarness(t)
	sc := h.sinkConfig(func(s *config.Sink) { s.RateLimit = fmt.Sprintf("%d/s", perSec) })
	shared := newMemTarget()
	ta, tb := &sharingTarget{memTarget: shared, share: -1}, &sharingTarget{memTarget: shared, share: -1}
	a, stopA := h.start(sc, ta)
	b, _ := h.start(sc, tb)
	la, lb := sink.Limiter(a), sink.Limiter(b)
	waitFor(t, "both workers holding partitions", func() bool {
		return ta.got() > 0 && tb.got() > 0 && math.Abs(ta.got()+tb.got()-1) < 1e-9
	})
	for _, m := range []struct {
		name  string
		share float64
		lim   *rate.Limiter
	}{{"a", ta.got(), la}, {"b", tb.got(), lb}} {
		if m.share != 1.0/3 && m.share != 2.0/3 {
			t.Errorf("worker %s: share %v of 3 partitions", m.name, m.share)
		}
		wantLimit, wantBurst := sink.MemberRate(perSec, perSec, m.share, 3) // burst: max(max_records 100, 300/s)
		if m.lim.Limit() != wantLimit || m.lim.Burst() != wantBurst {
			t.Errorf("worker %s (share %v): limiter %v/s burst %d, want %v/s burst %d", m.name, m.share,
				m.lim.Limit(), m.lim.Burst(), wantLimit, wantBurst)
		}
	}
	if sum := float64(la.Limit() + lb.Limit()); sum > perSec+1e-9 {
		t.Errorf("the workers' limits add up to %v/s, more than the sink's %d/s", sum, perSec)
	}

	// Together no faster than the limit: n records take at least (n - the bursts) / rate. Slowness
	// only adds to the time, so the bound cannot flake; without the sharing each worker would go
	// at the full rate with the full burst, and take about half as long.
	const n = 900
	start := time.Now()
	var evs []*change.Event
	for id := int32(1); id <= n; id++ {
		evs = append(evs, upsert(id, 1, "n"))
	}
	h.produce(evs...)
	end := h.endOffsets()
	waitFor(t, "every record applied", func() bool { return h.committed("s1") == end })
	if took, least := time.Since(start), time.Duration(float64(n-perSec)/perSec*float64(time.Second)); took < least {
		t.Errorf("two workers applied %d records in %s; at %d/s with a burst of %d that takes at least %s", n, took, perSec, perSec, least)
	}

	stopA()
	waitFor(t, "the remaining worker taking the whole", func() bool { return tb.got() == 1 })
	if lb.Limit() != perSec || lb.Burst() != perSec {
		t.Errorf("alone: limiter %v/s burst %d, want %d/s burst %d", lb.Limit(), lb.Burst(), perSec, perSec)
	}
}
