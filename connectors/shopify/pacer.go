package shopify

import (
	"context"
	"math"
	"sync"
	"time"
)

// safetyMargin is the cushion, in cost points, the pacer leaves in the bucket.
const safetyMargin = 1

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
type pacer struct {
	mu       sync.Mutex
	known    bool
	max      float64
	rate     float64 // points per second
	avail    float64 // at time at
	at       time.Time
	inflight float64 // points reserved by requests without a response yet
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
	p.avail = math.Min(p.max, p.avail+p.rate*now.Sub(p.at).Seconds())
	p.at = now
	need := math.Min(cost+safetyMargin, p.max)
	if p.avail >= need {
		p.avail -= cost
		p.inflight += cost
		return 0, true
	}
	return max(time.Millisecond, time.Duration((need-p.avail)/p.rate*float64(time.Second))), false
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
		p.avail = math.Min(p.max, p.avail+p.rate*now.Sub(p.at).Seconds()+reserved-spent)
		p.at = now
	}
	if cost == nil {
		return
	}
	st := cost.ThrottleStatus
	if st.RestoreRate <= 0 || st.MaximumAvailable <= 0 {
		return
	}
	reported := math.Max(0, st.CurrentlyAvailable-p.inflight)
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
	missing := cost - (p.avail + p.rate*time.Since(p.at).Seconds())
	return max(0, time.Duration(missing/p.rate*float64(time.Second)))
}
