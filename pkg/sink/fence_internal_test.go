package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
)

type longTarget struct{ Connector }

func (longTarget) MaxApply() time.Duration { return 30 * time.Minute }

// TestRebalanceTimeoutCoversTheLongestApply: the group waits for a worker at least as long as
// its connector says one apply may take, and in-flight applies are cut before that ends.
func TestRebalanceTimeoutCoversTheLongestApply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		conn    Connector
		session time.Duration
		want    time.Duration
	}{
		{"plain connector", nil, 10 * time.Second, 10 * time.Second},
		{"long applies", longTarget{}, 10 * time.Second, 30*time.Minute + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rebalanceTimeout(tc.session, tc.conn)
			if got != tc.want {
				t.Fatalf("rebalance timeout = %s, want %s", got, tc.want)
			}
			budget := rebalanceBudget(got, tc.session/6)
			if budget <= 0 || budget >= got-tc.session/6 {
				t.Fatalf("budget %s does not end before the rebalance timeout %s less a heartbeat", budget, got)
			}
		})
	}
}

// TestRebalanceWatchCancelsOnlyWhatOutlastsIt: applies are cancelled when a rebalance has waited
// for the budget, not when the worker let it through in time.
func TestRebalanceWatchCancelsOnlyWhatOutlastsIt(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	w := &rebalanceWatch{budget: 50 * time.Millisecond, cancel: cancel}
	w.blocked()
	w.released()
	time.Sleep(150 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatal("applies cancelled although the rebalance was let through in time")
	}
	w.blocked()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("applies not cancelled after the budget")
	}
	if !errors.Is(context.Cause(ctx), errRebalanceDeadline) {
		t.Fatalf("cause = %v", context.Cause(ctx))
	}
}

// TestRejoinPacer: the first session cut by a rebalance deadline rejoins at once, the next ones
// in a row wait longer and longer, and a session that ends otherwise starts the pacing over.
func TestRejoinPacer(t *testing.T) {
	p := newRejoinPacer(time.Second)
	p.bo.RandomizationFactor = 0 // exact waits here; jitter in use
	p.bo.Reset()
	now := time.Now()
	for i, tc := range []struct {
		err  error
		want time.Duration
	}{
		{errRebalanceDeadline, 0},
		{errRebalanceDeadline, time.Second},
		{errRebalanceDeadline, 2 * time.Second},
		{ErrFenced, 0},
		{errRebalanceDeadline, 0},
		{errRebalanceDeadline, time.Second},
	} {
		if got := p.next(now, tc.err); got != tc.want {
			t.Errorf("session %d (%v): wait %s, want %s", i+1, tc.err, got, tc.want)
		}
	}
	if got := p.next(now.Add(-3*time.Minute), errRebalanceDeadline); got != 0 {
		t.Errorf("a cut after a long session: wait %s, want 0", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.next(now, errRebalanceDeadline) // the second cut in a row: a wait, which ctx ends
	if err := p.wait(ctx, now, errRebalanceDeadline, zap.NewNop()); err == nil {
		t.Error("a stopped wait returned no error")
	}
}
