package capture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Partitions added to a topic under a running capture move keys to other partitions, which no
// sink can notice: capture says so in its metrics and status (and log), naming the topic and
// both sizes, and goes on writing every change.
func TestGrownTopicShows(t *testing.T) {
	e := newEnv(t, "public.t")
	e.exec("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	m := observe.NewMetrics()
	// The producer learns of new partitions at its next metadata refresh, every 5 minutes by
	// default; a test does not wait that long.
	e.opts = append(e.opts, capture.WithMetrics(m), capture.WithKafkaOpts(kgo.MetadataMinAge(50*time.Millisecond), kgo.MetadataMaxAge(200*time.Millisecond)))
	e.start()
	e.exec("INSERT INTO public.t VALUES (1, 'a')")
	e.waitEvents("wh.public.t", 1)
	if g := m.GrownTopics(); len(g) != 0 {
		t.Fatalf("growth reported before any: %+v", g)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreatePartitions(context.Background(), 3, "wh.public.t"); err != nil {
		t.Fatal(err)
	}
	id := 1
	eventually(t, "growth reported", func() error {
		id++
		e.exec("INSERT INTO public.t VALUES ($1, 'b')", id)
		if len(m.GrownTopics()) == 0 {
			return notYet("no growth reported after %d rows", id)
		}
		return nil
	})
	g := m.GrownTopics()
	if len(g) != 1 || g[0].Topic != "wh.public.t" || g[0].From != 3 || g[0].To != 6 {
		t.Fatalf("growth reported as %+v, want wh.public.t from 3 to 6", g)
	}
	if s := g[0].String(); !strings.Contains(s, "topic wh.public.t went from 3 to 6 partitions") {
		t.Errorf("growth reads %q", s)
	}
	e.waitEvents("wh.public.t", id)
}
