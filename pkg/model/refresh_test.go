package model

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
)

// TestRefreshOn: a model refreshed on a captured table runs at start, then after capture sees
// committed changes to the table, and what its topic says follows the table.
func TestRefreshOn(t *testing.T) {
	m := leadModel()
	m.RefreshOn = []string{"public.events"}
	e := newEnv(t, m)
	seedEvents(e)
	r := e.runner()
	s := NewScheduler(r)
	ctx, cancel := context.WithCancel(context.Background())
	c := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t)), capture.WithCommitHook(s.Committed))
	done := make(chan error, 2)
	go func() { done <- c.Run(ctx) }()
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; <-done }()
	topic := e.cfg.ModelTopic(m)

	waitFor(t, "the first run", func() bool { return maps.Equal(materialize(e.events(topic)), e.want(leadScores)) })
	// Capture needs its slot before it sees changes; the scheduler then needs no clock: no every.
	waitFor(t, "the replication slot", func() bool { return e.slotExists() })
	e.exec(`INSERT INTO public.events (email, points) VALUES ('new@x', 42), ('a@x', 1)`)
	waitFor(t, "a refresh after the insert", func() bool {
		got := materialize(e.events(topic))
		return len(got) == 4 && maps.Equal(got, e.want(leadScores))
	})
	e.exec(`DELETE FROM public.events WHERE email = 'b@x'`)
	waitFor(t, "a refresh after the delete", func() bool {
		got := materialize(e.events(topic))
		return len(got) == 3 && maps.Equal(got, e.want(leadScores))
	})
}

func (e *env) slotExists() bool {
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var n int
	_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'backflow'").Scan(&n)
	return n == 1
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 60s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSchedulerWaitsWhileStandby: a scheduler told its process is not the active capture runs
// nothing, and runs the due model once the process becomes active.
func TestSchedulerWaitsWhileStandby(t *testing.T) {
	m := leadModel()
	m.Every = "1h"
	e := newEnv(t, m)
	seedEvents(e)
	s := NewScheduler(e.runner())
	var active atomic.Bool
	s.OnlyWhile(active.Load)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	topic := e.cfg.ModelTopic(m)
	time.Sleep(2 * standbyPoll) // the start run is due now: a standby must not make it
	if evs := e.events(topic); len(evs) != 0 {
		t.Fatalf("a standby ran the model: %d records", len(evs))
	}
	active.Store(true)
	waitFor(t, "the run once active", func() bool { return maps.Equal(materialize(e.events(topic)), e.want(leadScores)) })
}
