package hubspot

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestPacerTakesItsGroupShare: a worker paces to its share of the budget (at least one request
// per window), also of a budget HubSpot announces later, and to the whole again when alone.
func TestPacerTakesItsGroupShare(t *testing.T) {
	p := newPacer(100, window, time.UTC, zap.NewNop())
	check := func(what string, wantMine int) {
		t.Helper()
		limit, burst := pace(wantMine, p.window)
		if p.mine != wantMine || p.lim.Limit() != limit || p.lim.Burst() != burst || len(p.sent) != wantMine {
			t.Errorf("%s: %d requests per window (limiter %v/s burst %d, ring %d), want %d (%v/s burst %d)",
				what, p.mine, p.lim.Limit(), p.lim.Burst(), len(p.sent), wantMine, limit, burst)
		}
	}
	check("alone", 100)
	for _, tc := range []struct {
		share float64
		mine  int
	}{{0.5, 50}, {1.0 / 3, 33}, {0, 1}, {1, 100}} {
		p.setShare(tc.share)
		check("share "+strconv.FormatFloat(tc.share, 'g', 3, 64), tc.mine)
	}
	p.setShare(0.5)
	h := http.Header{}
	h.Set(headerMax, "20")
	h.Set(headerInterval, "10000")
	p.observe(h)
	if p.budget != 20 {
		t.Fatalf("announced budget %d, want 20", p.budget)
	}
	check("half of an announced budget", 10)
}
