package hubspot

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
)

// Pacing constants.
const (
	// headroom is the share of the budget the limiter spends steadily; the rest is its burst, so
	// that burst + headroom*budget never exceeds the budget in any rolling window.
	headroom = 0.95
	// lowWater: when X-HubSpot-RateLimit-Remaining drops to it, someone else is spending the
	// budget too, and the pacer slows down a few slots.
	lowWater = 1
	// dailyGrace is added to the computed daily reset, against clock skew.
	dailyGrace = time.Minute
	// dailyProbe is how long the pacer waits when the daily limit is still reached right after
	// the computed reset (the account's time zone is not the configured one).
	dailyProbe = time.Hour
)

// Rate-limit headers HubSpot sends on every response.
const (
	headerMax            = "X-HubSpot-RateLimit-Max"
	headerRemaining      = "X-HubSpot-RateLimit-Remaining"
	headerInterval       = "X-HubSpot-RateLimit-Interval-Milliseconds"
	headerSecondly       = "X-HubSpot-RateLimit-Secondly"
	headerDailyRemaining = "X-HubSpot-RateLimit-Daily-Remaining"
)

// pacer spaces requests to stay under HubSpot's rolling-window budget and holds the sink while
// the daily limit is reached. It is shared by every Apply call of a connector.
type pacer struct {
	lim     *rate.Limiter
	log     *zap.Logger
	loc     *time.Location // the account's time zone, for the daily reset
	now     func() time.Time
	conf    int           // with.requests_per_10s
	confWin time.Duration // its window, 10s
	mu      sync.Mutex
	budget  int           // requests allowed per window, to the whole sink
	window  time.Duration // the rolling window
	share   float64       // this worker's part of the budget (sink.GroupShared), 1 alone
	mine    int           // this worker's requests per window: budget × share, at least 1
	sent    []time.Time   // send times of the last mine requests, a ring
	next    int
	hold    time.Time // no request before this (after a 429 or a low Remaining)
	paused  time.Time // the daily limit is reached until this time
	resumed time.Time // when the last daily pause ended
}

// newPacer paces requests at headroom × budget per window.
func newPacer(budget int, window time.Duration, loc *time.Location, log *zap.Logger) *pacer {
	limit, burst := pace(budget, window)
	p := &pacer{lim: rate.NewLimiter(limit, burst), log: log, loc: loc, now: time.Now, conf: budget, confWin: window, share: 1}
	p.setBudget(budget, window)
	return p
}

// pace is the limiter's rate and burst for budget requests per window.
func pace(budget int, window time.Duration) (rate.Limit, int) {
	steady := headroom * float64(budget)
	return rate.Limit(steady / window.Seconds()), max(1, budget-int(steady+0.5))
}

// setBudget sets the limiter for this worker's share of budget requests per window; p.mu is held
// or p is new.
func (p *pacer) setBudget(budget int, window time.Duration) {
	p.budget, p.window = budget, window
	mine := max(1, int(math.Round(float64(budget)*p.share)))
	p.mine = mine
	limit, burst := pace(mine, window)
	p.lim.SetLimit(limit)
	p.lim.SetBurst(burst)
	ring := make([]time.Time, mine)
	for i := range min(mine, len(p.sent)) { // keep the newest send times
		ring[mine-1-i] = p.sent[(p.next-1-i+2*len(p.sent))%len(p.sent)]
	}
	p.sent, p.next = ring, 0
}

// setShare paces this worker to its share of the budget, which HubSpot counts per app and
// account, not per worker: the workers of a sink together stay within it.
func (p *pacer) setShare(share float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if share == p.share {
		return
	}
	p.share = share
	p.setBudget(p.budget, p.window)
}

// wait blocks until a request may go out, or returns the daily pause as a *pauseError.
func (p *pacer) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now, hold, paused := p.now(), p.hold, p.paused
		p.mu.Unlock()
		if now.Before(paused) {
			return &pauseError{until: paused, wait: paused.Sub(now)}
		}
		if !time.Now().Before(hold) {
			break
		}
		if err := httpx.Sleep(ctx, time.Until(hold)); err != nil {
			return err
		}
	}
	if err := p.lim.Wait(ctx); err != nil {
		return fmt.Errorf("hubspot: waiting for the rate limit: %w", err)
	}
	p.mu.Lock()
	p.sent[p.next] = time.Now()
	p.next = (p.next + 1) % len(p.sent)
	p.mu.Unlock()
	return nil
}

// observe adapts to the rate-limit headers of a response.
func (p *pacer) observe(h http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.adaptBudget(h)
	if remaining, ok := headerInt(h, headerRemaining); ok && remaining <= lowWater {
		slot := p.window / time.Duration(p.mine)
		p.holdUntil(time.Now().Add(time.Duration(lowWater+1-remaining) * slot))
	}
	if daily, ok := headerInt(h, headerDailyRemaining); ok && daily <= 0 {
		p.pauseDaily()
	}
}

// adaptBudget paces to the tightest of the configured budget and the budgets HubSpot announces
// (X-HubSpot-RateLimit-Max per -Interval-Milliseconds, X-HubSpot-RateLimit-Secondly per second).
func (p *pacer) adaptBudget(h http.Header) {
	budget, window := p.conf, p.confWin
	tighter := func(n int, w time.Duration) { // a lower rate, or the same with a smaller burst
		if n <= 0 || w <= 0 {
			return
		}
		r, b := pace(n, w)
		cr, cb := pace(budget, window)
		if r < cr || (r == cr && b < cb) {
			budget, window = n, w
		}
	}
	maxN, _ := headerInt(h, headerMax)
	ms, _ := headerInt(h, headerInterval)
	tighter(maxN, time.Duration(ms)*time.Millisecond)
	secondly, _ := headerInt(h, headerSecondly)
	tighter(secondly, time.Second)
	if budget == p.budget && window == p.window {
		return
	}
	p.log.Info("pacing HubSpot requests to a new budget", zap.Int("requests", budget), zap.Duration("window", window))
	p.setBudget(budget, window)
}

// holdUntil keeps requests back until t; p.mu is held.
func (p *pacer) holdUntil(t time.Time) {
	if t.After(p.hold) {
		p.hold = t
	}
}

// throttled records a 429 for a rolling or per-second limit and returns how long to wait: the
// Retry-After header when HubSpot sends one, else until the oldest of the window's requests
// leaves it (a second for the SECONDLY policy).
func (p *pacer) throttled(policy string, retryAfter time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	wait := retryAfter
	switch {
	case wait > 0:
	case policy == "SECONDLY":
		wait = time.Second
	default:
		wait = p.windowRemainder(time.Now())
	}
	p.holdUntil(time.Now().Add(wait))
	return wait
}

// windowRemainder is how long until a slot of the window frees up; p.mu is held.
func (p *pacer) windowRemainder(now time.Time) time.Duration {
	slot := p.window / time.Duration(p.mine)
	oldest := p.sent[p.next] // the ring is in send order: next is the oldest entry
	if oldest.IsZero() {
		return slot
	}
	return min(max(oldest.Add(p.window).Sub(now), slot), p.window)
}

// dailyLimited records a 429 of the DAILY policy and returns the wait until the reset.
func (p *pacer) dailyLimited() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauseDaily()
	return p.paused.Sub(p.now())
}

// pauseDaily pauses requests until the daily reset, logging it once; p.mu is held.
func (p *pacer) pauseDaily() {
	now := p.now()
	if now.Before(p.paused) {
		return
	}
	if !p.paused.IsZero() && !now.Before(p.paused) {
		p.resumed, p.paused = p.paused, time.Time{}
	}
	until := nextMidnight(now, p.loc).Add(dailyGrace)
	probing := !p.resumed.IsZero() && now.Sub(p.resumed) < 10*time.Minute
	if probing {
		until = now.Add(dailyProbe)
	}
	p.paused = until
	p.log.Warn("HubSpot daily limit reached; pausing until "+until.Format(time.RFC3339),
		zap.Time("until", until), zap.String("time_zone", p.loc.String()), zap.Bool("reset_not_seen_at_midnight", probing))
}

// pausedUntil reports the end of the current daily pause, or the zero time.
func (p *pacer) pausedUntil() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.now().Before(p.paused) {
		return p.paused
	}
	return time.Time{}
}

// nextMidnight is the start of the day after now's day in loc.
func nextMidnight(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// headerInt reads an integer header.
func headerInt(h http.Header, name string) (int, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// pauseError says the daily limit is reached; the connector turns it into a sink.RetryAfter.
type pauseError struct {
	until time.Time
	wait  time.Duration
}

func (e *pauseError) Error() string {
	return "hubspot: daily API limit reached; the sink is paused until " + e.until.Format(time.RFC3339)
}
