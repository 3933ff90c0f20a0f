package capture

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestPartitionBookReports checks what the book reports as the counts it sees change: a growth
// once (from the count it kept), a shrink as a warning only, and nothing for a first sight or a
// growth the producer already reported.
func TestPartitionBookReports(t *testing.T) {
	type seen struct {
		topic   string
		n       int32
		running int32 // > 0: the producer saw the topic grow from n to this instead
	}
	cases := []struct {
		name     string
		seen     []seen
		grown    []observe.TopicGrowth // Topic, From, To, NotRunning of each growth reported
		warnings int
	}{
		{name: "first sight", seen: []seen{{topic: "a", n: 3}}},
		{name: "unchanged", seen: []seen{{topic: "a", n: 3}, {topic: "a", n: 3}}},
		{name: "grew while stopped", seen: []seen{{topic: "a", n: 3}, {topic: "b", n: 1}, {topic: "a", n: 6}, {topic: "a", n: 6}},
			grown: []observe.TopicGrowth{{Topic: "a", From: 3, To: 6, NotRunning: "capture"}}},
		{name: "grew twice", seen: []seen{{topic: "a", n: 3}, {topic: "a", n: 6}, {topic: "a", n: 8}},
			grown: []observe.TopicGrowth{{Topic: "a", From: 3, To: 8, NotRunning: "capture"}}},
		{name: "created again smaller", seen: []seen{{topic: "a", n: 6}, {topic: "a", n: 2}}, warnings: 1},
		{name: "grew while running", seen: []seen{{topic: "a", n: 3}, {topic: "a", n: 3, running: 6}, {topic: "a", n: 6}},
			grown: []observe.TopicGrowth{{Topic: "a", From: 3, To: 6}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			m := observe.NewMetrics()
			b := newPartitionBook(zap.New(core), m)
			for _, s := range tc.seen {
				if s.running > 0 {
					b.whileRunning(s.topic, int(s.n), int(s.running))
					continue
				}
				b.check(s.topic, s.n, "")
			}
			b.close()
			got := m.GrownTopics()
			if len(got) != len(tc.grown) {
				t.Fatalf("grown topics %+v, want %+v", got, tc.grown)
			}
			for i, g := range got {
				w := tc.grown[i]
				if g.Topic != w.Topic || g.From != w.From || g.To != w.To || g.NotRunning != w.NotRunning {
					t.Errorf("grown topic %+v, want %+v", g, w)
				}
			}
			if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != tc.warnings {
				t.Errorf("%d warnings, want %d: %v", n, tc.warnings, logs.All())
			}
			if n := logs.FilterLevelExact(zap.ErrorLevel).Len(); (n > 0) != (len(tc.grown) > 0) {
				t.Errorf("%d errors logged for growths %+v", n, tc.grown)
			}
		})
	}
}

// TestCheckAllKeepsAReplacedTopicUntilEnsured: a topic created again under another ID is named by
// every start until capture ensures it again (after queueing its table's refresh): a start that
// learned the new ID at once, then crashed before the refresh was queued, would never refill it.
func TestCheckAllKeepsAReplacedTopicUntilEnsured(t *testing.T) {
	ctx := context.Background()
	kf := testenv.NewKafka(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	created, err := adm.CreateTopic(ctx, 3, 1, nil, "wh.public.t")
	if err != nil {
		t.Fatal(err)
	}
	b := newPartitionBook(zap.NewNop(), nil)
	b.check("wh.public.t", 3, "an-older-id")
	for i := range 2 {
		deleted, err := b.checkAll(ctx, adm)
		if err != nil || !slices.Equal(deleted, []string{"wh.public.t"}) {
			t.Fatalf("start %d: checkAll = %v, %v; want the topic created again", i, deleted, err)
		}
	}
	b.check("wh.public.t", 3, created.ID.String()) // ensured again
	if deleted, err := b.checkAll(ctx, adm); err != nil || len(deleted) != 0 {
		t.Fatalf("once ensured: checkAll = %v, %v; want nothing", deleted, err)
	}
}
