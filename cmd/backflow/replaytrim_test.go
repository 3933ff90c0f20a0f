package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/replay"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestWarnTrimmed: a replay from earliest names each partition whose first records Kafka
// deleted already, on a topic whose cleanup.policy lets it delete them; a partition of a
// compacted topic lost only superseded records, and one from offsets starts where it was asked
// to: neither is named.
func TestWarnTrimmed(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKafka(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for topic, policy := range map[string]string{"wh.public.del": "delete", "wh.public.cmp": "compact"} {
		if err := kafka.EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: 2, CleanupPolicy: policy}, nil); err != nil {
			t.Fatal(err)
		}
	}
	ranges := []replay.Range{
		{Topic: "wh.public.del", Partition: 0, Start: 0, End: 10}, {Topic: "wh.public.del", Partition: 1, Start: 7, End: 20},
		{Topic: "wh.public.cmp", Partition: 0, Start: 5, End: 10},
	}
	earliest, err := replay.ParseFrom("earliest")
	if err != nil {
		t.Fatal(err)
	}
	offsets, err := replay.ParseFrom("wh.public.del:1:7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from replay.From
		want []string
	}{
		{"earliest", earliest, []string{"warning: wh.public.del/1 begins at offset 7: Kafka deleted its first 7 records"}},
		{"offsets", offsets, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			warnTrimmed(ctx, adm, &out, zap.NewNop(), tc.from, ranges)
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
