package shopify

import (
	"context"
	"math"
	"sync"
	"time"
)

// safetyMargin is the cushion, in cost points, the pacer leaves in the bucket.
const safetyMargin = 1

// minPart is the least part of the bucket a worker models: a worker without partitions (group
// share 0) sends nothing, and the floor only keeps its waits finite.
const minPart = 0.01

// throttleStatus is extensions.cost.throttleStatus of a response.
type throttleStatus struct {
	MaximumAvailable   float64 `json:"maximumAvailable"`
	CurrentlyAvailable float64 `json:"currentlyAvailable"`
	RestoreRate        float64 `json:"restoreRate"`
}

// pacer models the app's cost bucket in the shop, to send each request only when the bucket
// covers its cost. The model charges each request's estimated cost when it is sent, restores
// at the bucket's rate and gives back what a response says was not spent (requested minus
// actual cost, all of it for a THROTTLED answer). Every response's throttleStatus caps the
// model: the bucket then held currentlyAvailable points, less what requests still in flight
// will take. The cap only lowers the model, so a status that arrives late (computed before
// another request was charged) cannot make it optimistic, and other clients of the same app
// and shop are accounted for. Until a first response has told it the bucket's size and rate,
// requests go without waiting.
//
// The bucket is the app's in the shop, shared by every worker of the sink: each worker models
// only its part of it, its group share (sink.GroupShared) of the size, the restore rate and the
// reported availability, so that together they stay within the bucket.
type pacer struct {
	mu       sync.Mutex
	known    bool
	max      float64
	rate     float64 // points per second
	avail    float64 // this worker's part, at time at
	at       time.Time
	inflight float64 // points reserved by this worker's requests without a response yet
	shared   bool    // a group share was set
	share    float64
}

// part is this worker's part of the bucket: 1 until a group share is set.
func (p *pacer) part() float64 {
	if !p.shared {
		return 1
	}
	return max(p.share, minPart)
}

// setShare makes the pacer model share of the bucket from now on.
func (p *pacer) setShare(share float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known {
		now := time.Now()
		p.avail = math.Min(p.max*p.part(), p.avail+p.rate*p.part()*now.Sub(p.at).Seconds())
		p.at = now
	}
	p.shared, p.share = true, share
	p.avail = math.Min(p.avail, p.max*p.part())
}

// take waits until cost points are available and reserves them.
func (p *pacer) take(ctx context.Context, cost float64) error {
	for {
		wait, ok := p.reserve(cost)
		if ok {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// reserve reserves cost points if the bucket holds them, or says how long to wait.
func (p *pacer) reserve(cost float64) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.known {
		p.inflight += cost
		return 0, true
	}
	now := time.Now()
	size, rate := p.max*p.part(), p.rate*p.part()
	p.avail = math.Min(size, p.avail+rate*now.Sub(p.at).Seconds())
	p.at = now
	need := math.Min(cost+safetyMargin, size)
	if p.avail >= need {
		p.avail -= cost
		p.inflight += cost
		return 0, true
	}
	return max(time.Millisecond, time.Duration((need-p.avail)/rate*float64(time.Second))), false
}

// settle ends a reservation with the response's cost (nil when the response had none, e.g. a
// 401 or a lost connection: the reservation is then given back).
func (p *pacer) settle(reserved float64, cost *queryCost) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = math.Max(0, p.inflight-reserved)
	spent := 0.0
	if cost != nil && cost.ActualQueryCost != nil {
		spent = *cost.ActualQueryCost
	}
	now := time.Now()
	if p.known {
		p.avail = math.Min(p.max*p.part(), p.avail+p.rate*p.part()*now.Sub(p.at).Seconds()+reserved-spent)
		p.at = now
	}
	if cost == nil {
		return
	}
	st := cost.ThrottleStatus
	if st.RestoreRate <= 0 || st.MaximumAvailable <= 0 {
		return
	}
	reported := math.Max(0, st.CurrentlyAvailable*p.part()-p.inflight)
	if !p.known || reported < p.avail {
		p.avail = reported
	}
	p.known, p.max, p.rate, p.at = true, st.MaximumAvailable, st.RestoreRate, now
}

// empty records that the bucket is empty now; it reports whether the model knows the restore
// rate (and so how long to wait).
func (p *pacer) empty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.avail, p.at = 0, time.Now()
	return p.known
}

// waitFor estimates how long until the bucket holds cost points, from what is known now.
func (p *pacer) waitFor(cost float64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.known {
		return time.Second
	}
	rate := p.rate * p.part()
	missing := cost - (p.avail + rate*time.Since(p.at).Seconds())
	return max(0, time.Duration(missing/rate*float64(time.Second)))
}
