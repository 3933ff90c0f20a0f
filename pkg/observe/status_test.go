package observe

import (
	"strings"
	"testing"
	"time"
)

func healthyStatus() *Status {
	return &Status{
		Capture: CaptureStatus{Slot: "backflow", Exists: true, Active: true, LagBytes: 100, WALStatus: "reserved"},
		Kafka:   KafkaStatus{Brokers: []string{"127.0.0.1:9092"}},
		Sinks:   []SinkStatus{{Name: "crm", Group: "crm", State: "Stable", Members: []string{"a@host"}, Lag: 5}},
	}
}

func TestEvaluate(t *testing.T) {
	th := Thresholds{MaxLag: 10, MaxLagBytes: 1000}
	tests := []struct {
		name   string
		change func(*Status)
		want   []string // substrings of the single problem; none: healthy
	}{
		{"healthy", func(*Status) {}, nil},
		{"active slot far behind is still healthy", func(s *Status) { s.Capture.LagBytes = 1 << 40 }, nil},
		{"inactive slot below threshold while capture snapshots", func(s *Status) {
			s.Capture.Active, s.Capture.LagBytes, s.Capture.Instance = false, 999, "backflow capture vm:1"
		}, nil},
		{"inactive slot above threshold", func(s *Status) {
			s.Capture.Active, s.Capture.LagBytes, s.Capture.Instance = false, 5000, "backflow capture vm:1"
		}, []string{`slot "backflow" is inactive`, "4.9 KiB", "1000 B"}},
		{"no capture process", func(s *Status) { s.Capture.Active = false; s.Capture.LagBytes = 999 },
			[]string{`no capture process holds or reads replication slot "backflow"`, "999 B"}},
		{"slot missing", func(s *Status) { s.Capture.Exists = false }, []string{`"backflow" does not exist`}},
		{"wal lost", func(s *Status) { s.Capture.WALStatus = "lost" }, []string{"lost"}},
		{"spill_dir failed", func(s *Status) { s.Capture.SpillFailed = "write spill file /x/1.spill: no space left on device" },
			[]string{"spill_dir failed", "no space left", "protocol 1", "restarted"}},
		{"table unpublished", func(s *Status) { s.Capture.Publication, s.Capture.UnpublishedTables = "backflow", []string{"public.u"} },
			[]string{"table public.u is not in publication backflow", "stale"}},
		{"table unfollowed, named once", func(s *Status) {
			s.Capture.UnpublishedTables = []string{"public.k"}
			s.Capture.UnfollowedTables = []TableProblem{{Table: "public.k", Reason: "table public.k has no primary key"}}
		}, []string{"cannot follow table public.k", "no primary key", "stale"}},
		{"table unkeyed, named once", func(s *Status) {
			s.Capture.UnkeyedTables, s.Capture.UnpublishedTables = []string{"app.items"}, []string{"app.items"}
		}, []string{"table app.items has no primary key", "source.postgres.keys", "stale"}},
		{"topic gained partitions", func(s *Status) {
			s.Capture.GrownTopics = []TopicGrowth{{Topic: "wh.public.t", From: 3, To: 6, At: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}}
		}, []string{"topic wh.public.t went from 3 to 6 partitions at 2026-12-06T09:00:00Z", "older version", "backflow replay"}},
		{"topic gained partitions while capture was not running", func(s *Status) {
			s.Capture.GrownTopics = []TopicGrowth{{Topic: "wh.public.t", From: 3, To: 6, At: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC), NotRunning: "capture"}}
		}, []string{"topic wh.public.t went from 3 to 6 partitions while capture was not running (seen at 2026-12-06T09:00:00Z)", "backflow replay"}},
		{"database down", func(s *Status) { s.Capture.Error = "connection refused" }, []string{"database", "connection refused"}},
		{"kafka down", func(s *Status) { s.Kafka.Error = "dial tcp: refused"; s.Sinks = nil }, []string{"kafka", "127.0.0.1:9092", "refused"}},
		{"no members", func(s *Status) { s.Sinks[0].Members = nil; s.Sinks[0].State = "Empty" }, []string{"sink crm", "no members", "Empty"}},
		{"lag above max", func(s *Status) { s.Sinks[0].Lag = 11 }, []string{"sink crm", "lag 11", "--max-lag 10"}},
		{"group unreadable", func(s *Status) { s.Sinks[0].Error = "not coordinator" }, []string{"sink crm", "not coordinator"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := healthyStatus()
			tt.change(st)
			st.Evaluate(th)
			if st.Thresholds != th {
				t.Errorf("thresholds %+v, want %+v", st.Thresholds, th)
			}
			if tt.want == nil {
				if !st.Healthy || len(st.Problems) != 0 || st.Problems == nil {
					t.Fatalf("healthy=%v problems=%#v, want healthy with an empty list", st.Healthy, st.Problems)
				}
				return
			}
			if st.Healthy || len(st.Problems) != 1 {
				t.Fatalf("healthy=%v problems=%q, want one problem", st.Healthy, st.Problems)
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Problems[0], w) {
					t.Errorf("problem %q does not contain %q", st.Problems[0], w)
				}
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
