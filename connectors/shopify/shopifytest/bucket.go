package shopifytest

import (
	"math"
	"time"
)

// bucket is Shopify's leaky bucket of cost points: it holds up to max points, restores rate
// points a second, must cover a query's requested cost before it runs and is refunded the
// difference between requested and actual cost afterwards.
type bucket struct {
	max, rate float64
	avail     float64
	at        time.Time
}

func newBucket(max, rate float64) bucket {
	return bucket{max: max, rate: rate, avail: max, at: time.Now()}
}

// available returns the points available at now, restoring since the last update.
func (b *bucket) available(now time.Time) float64 {
	return math.Min(b.max, b.avail+b.rate*now.Sub(b.at).Seconds())
}

// take charges cost if the bucket covers it.
func (b *bucket) take(now time.Time, cost float64) bool {
	b.avail, b.at = b.available(now), now
	if b.avail < cost {
		return false
	}
	b.avail -= cost
	return true
}

// refund gives back points charged but not spent.
func (b *bucket) refund(points float64) {
	b.avail = math.Min(b.max, b.avail+points)
}

// wait is how long until the bucket covers cost.
func (b *bucket) wait(now time.Time, cost float64) time.Duration {
	missing := cost - b.available(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / b.rate * float64(time.Second))
}

func (b *bucket) drain(now time.Time) {
	b.avail, b.at = 0, now
}

// status is the extensions.cost.throttleStatus object.
func (b *bucket) status(now time.Time) map[string]any {
	return map[string]any{
		"maximumAvailable":   b.max,
		"currentlyAvailable": math.Floor(b.available(now)),
		"restoreRate":        b.rate,
	}
}
