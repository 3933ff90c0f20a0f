package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestStatusReportsWhatTheRunningSinkKnows: `backflow status` turns the stalled partitions, long
// waits on a target, mapping holds and lost records that a running sink process reports, and a
// capture failing run after run, into problems (exit 1), which Kafka and the slot alone do not
// show.
func TestStatusReportsWhatTheRunningSinkKnows(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		report func(*observe.Metrics)
		want   string // a problem line contains it; "" for healthy
	}{
		{"nothing to report", func(*observe.Metrics) {}, ""},
		{"stalled", func(m *observe.Metrics) {
			m.Stalled("crm", []observe.StalledPartition{{Topic: "wh.public.t", Partition: 2, Committed: 10, End: 15, Since: since}})
		}, "sink crm: stalled: lag has not moved while the target is reachable on wh.public.t/2 (committed 10, end 15"},
		{"mapping hold", func(m *observe.Metrics) {
			m.MappingHeld("crm", observe.MappingHold{Topic: "wh.public.t", Partition: 1, Offset: 7, Field: "map.title", Column: "title",
				Error: `map.title (sink crm): public.t has no column "title"`, Since: since})
		}, `sink crm: holds wh.public.t/1 at offset 7 since 2026-01-02T03:04:05Z: map.title (sink crm): public.t has no column "title"`},
		{"waiting on the target", func(m *observe.Metrics) {
			m.Waiting("crm", []observe.WaitingPartition{{Topic: "wh.public.t", Partition: 0, Since: since, Error: "connection refused"}})
		}, "sink crm: waiting on its target (retried until it succeeds; nothing after it in the partition is applied) on wh.public.t/0 since 2026-01-02T03:04:05Z: connection refused"},
		{"capture failing", func(m *observe.Metrics) { m.CaptureFailed(errors.New("TOPIC_AUTHORIZATION_FAILED")) },
			"capture: not capturing: 1 run(s) failed in a row since"},
		{"records lost", func(m *observe.Metrics) {
			m.Lost("crm", observe.LostRange{Topic: "wh.public.t", Partition: 3, From: 10, To: 15, At: since})
		}, "sink crm: 5 record(s) were deleted from Kafka before the sink applied them, and the target misses their changes: wh.public.t/3 offsets 10-14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			healthy := func() *observe.Status {
				st := &observe.Status{Capture: observe.CaptureStatus{Slot: "backflow", Exists: true, Active: true},
					Sinks: []observe.SinkStatus{{Name: "crm", Group: "crm", Members: []string{"m"}}}}
				st.Evaluate(observe.DefaultThresholds())
				return st
			}
			m := observe.NewMetrics()
			tt.report(m)
			srv := observe.NewServer("127.0.0.1:0", m, func(context.Context) (*observe.Status, error) { return healthy(), nil },
				nil, observe.WithSampleEvery(time.Hour))
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			st := healthy()
			addRunning(context.Background(), &config.Pipeline{HTTP: config.HTTP{Listen: srv.Addr()}}, st)
			problems := strings.Join(st.Problems, "\n")
			if st.Healthy != (tt.want == "") || tt.want != "" && !strings.Contains(problems, tt.want) {
				t.Errorf("healthy %v, problems:\n%s\nwant %q", st.Healthy, problems, tt.want)
			}
		})
	}
}

// TestStatusShowsSnapshotInProgress: the running capture's snapshot progress reaches `backflow
// status`, as text and as JSON, through the process's /status.json.
func TestStatusShowsSnapshotInProgress(t *testing.T) {
	m := observe.NewMetrics()
	m.SnapshotStarted("public.orders", 4000, 0)
	m.SnapshotRows("public.orders", 1000)
	healthy := func() *observe.Status {
		st := &observe.Status{Capture: observe.CaptureStatus{Slot: "backflow", Exists: true, Active: true}}
		st.Evaluate(observe.DefaultThresholds())
		return st
	}
	srv := observe.NewServer("127.0.0.1:0", m, func(context.Context) (*observe.Status, error) { return healthy(), nil },
		nil, observe.WithSampleEvery(time.Hour))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	st := healthy()
	addRunning(context.Background(), &config.Pipeline{HTTP: config.HTTP{Listen: srv.Addr()}}, st)
	tests := []struct {
		asJSON bool
		want   []string
	}{
		{false, []string{"snapshot in progress: public.orders: 1000 of ~4000 rows (25.0%)", "rows/s"}},
		{true, []string{`"table": "public.orders"`, `"done": 1000`, `"estimated": 4000`, `"percent": 25`, `"rows_per_sec"`, `"eta_seconds"`}},
	}
	for _, tt := range tests {
		var out strings.Builder
		if err := printStatus(&out, st, tt.asJSON); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("json %v: output lacks %q:\n%s", tt.asJSON, w, out.String())
			}
		}
	}
}

// TestStatusPageShowsSnapshot renders the status page of a process whose capture is snapshotting.
func TestStatusPageShowsSnapshot(t *testing.T) {
	browser := chromium(t)
	m := observe.NewMetrics()
	m.SnapshotStarted("public.orders", 4000, 0)
	m.SnapshotRows("public.orders", 1000)
	srv := observe.NewServer("127.0.0.1:0", m, func(context.Context) (*observe.Status, error) {
		st := &observe.Status{Capture: observe.CaptureStatus{Slot: "backflow", Exists: true, Active: true}}
		st.Evaluate(observe.DefaultThresholds())
		return st, nil
	}, nil, observe.WithSampleEvery(time.Hour))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	dom := headless(t, browser, "http://"+srv.Addr()+"/", "--dump-dom")
	for _, want := range []string{"Snapshot public.orders", "of ~4", "(25.0%)", "rows/s"} {
		if !strings.Contains(dom, want) {
			t.Errorf("status page lacks %q; DOM:\n%s", want, dom)
		}
	}
}
