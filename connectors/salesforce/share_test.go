package salesforce

import (
	"testing"

	"golang.org/x/time/rate"
)

// TestRequestsPerSecondIsTheGroups: requests_per_second is the sink's across its workers; each
// paces to its share, and one without partitions to a small floor rather than 0 (on which a
// request would wait forever).
func TestRequestsPerSecondIsTheGroups(t *testing.T) {
	c := &connector{cfg: &config{requestsPerSec: 10}, pacer: rate.NewLimiter(10, 1)}
	for _, tc := range []struct {
		share float64
		want  rate.Limit
	}{{0.5, 5}, {0.25, 2.5}, {0, 10 * minShare}, {1, 10}} {
		c.SetGroupShare(tc.share)
		if got := c.pacer.Limit(); got != tc.want {
			t.Errorf("share %v: %v requests/s, want %v", tc.share, got, tc.want)
		}
	}
	(&connector{cfg: &config{}}).SetGroupShare(0.5) // without requests_per_second: nothing to pace
}
