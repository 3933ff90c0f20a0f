package shopify

import (
	"math"
	"testing"
	"time"
)

// TestPacerModelsItsGroupShare: a worker models its share of the bucket's size, restore rate and
// reported availability, so it waits where the whole bucket would not; alone it takes the whole.
func TestPacerModelsItsGroupShare(t *testing.T) {
	status := func() *queryCost {
		spent := 0.0
		return &queryCost{ActualQueryCost: &spent,
			ThrottleStatus: throttleStatus{MaximumAvailable: 1000, CurrentlyAvailable: 1000, RestoreRate: 50}}
	}
	for _, tc := range []struct {
		name     string
		share    float64 // < 0: never set
		wantWait time.Duration
	}{
		{"alone", -1, 0},
		{"whole", 1, 0},
		// half: 500 points of 1000, restoring at 25/s; after 400, the next 400 (+1 margin) wait 301/25 s
		{"half", 0.5, time.Duration(301.0 / 25 * float64(time.Second))},
		// no partitions: a finite wait all the same, on the floor's 10 points restoring at 0.5/s;
		// the first 400 went on a full 10 and left -390
		{"none", 0, time.Duration((10.0 + 390) / 0.5 * float64(time.Second))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p pacer
			if tc.share >= 0 {
				p.setShare(tc.share)
			}
			if _, ok := p.reserve(1); !ok {
				t.Fatal("the first request waited before the bucket was known")
			}
			p.settle(1, status())
			if _, ok := p.reserve(400); !ok {
				t.Fatal("a first 400 points waited")
			}
			wait, ok := p.reserve(400)
			if tc.wantWait == 0 {
				if !ok {
					t.Errorf("waited %s with the whole bucket", wait)
				}
				return
			}
			if ok || math.Abs(float64(wait-tc.wantWait)) > float64(50*time.Millisecond) {
				t.Errorf("reserve: wait %s (ok %v), want %s", wait, ok, tc.wantWait)
			}
		})
	}
}
