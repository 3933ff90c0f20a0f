package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/replay"
)

// TestWarnTrimmed: a replay from earliest names each partition whose first records Kafka
// deleted already; one from a time or from offsets starts where it was asked to, and says
// nothing.
func TestWarnTrimmed(t *testing.T) {
	ranges := []replay.Range{{Topic: "wh.public.t", Partition: 0, Start: 0, End: 10}, {Topic: "wh.public.t", Partition: 1, Start: 7, End: 20}}
	earliest, err := replay.ParseFrom("earliest")
	if err != nil {
		t.Fatal(err)
	}
	offsets, err := replay.ParseFrom("wh.public.t:1:7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from replay.From
		want []string
	}{
		{"earliest", earliest, []string{"warning: wh.public.t/1 begins at offset 7: Kafka deleted its first 7 records"}},
		{"offsets", offsets, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			warnTrimmed(&out, zap.NewNop(), tc.from, ranges)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", lines, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("warning %q, want it to start with %q", lines[i], w)
				}
			}
		})
	}
}
