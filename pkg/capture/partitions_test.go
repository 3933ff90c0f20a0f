package capture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

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

	e.addPartitions("wh.public.t", 3)
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

// TestGrowthWhileStoppedShows adds partitions to a topic while capture is stopped: its next start
// reports the growth (from the count kept in its state) before writing to the topic, every row
// still arrives, and the start after that, with the new count kept, reports nothing.
func TestGrowthWhileStoppedShows(t *testing.T) {
	e := newEnv(t, "public.t")
	e.exec("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	base := e.opts
	run := func(m *observe.Metrics) (stop func() error) {
		e.opts = append(base, capture.WithMetrics(m))
		return e.start()
	}
	stop := run(observe.NewMetrics())
	e.exec("INSERT INTO public.t VALUES (1, 'a')")
	e.waitEvents("wh.public.t", 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e.addPartitions("wh.public.t", 2)
	m := observe.NewMetrics()
	stop = run(m)
	eventually(t, "growth reported at start", func() error {
		if len(m.GrownTopics()) == 0 {
			return notYet("no growth reported")
		}
		return nil
	})
	g := m.GrownTopics()
	if len(g) != 1 || g[0].Topic != "wh.public.t" || g[0].From != 3 || g[0].To != 5 || g[0].NotRunning != "capture" {
		t.Fatalf("growth reported as %+v, want wh.public.t from 3 to 5 while stopped", g)
	}
	if s := g[0].String(); !strings.Contains(s, "went from 3 to 5 partitions while capture was not running") {
		t.Errorf("growth reads %q", s)
	}
	e.exec("INSERT INTO public.t SELECT g, 'b' FROM generate_series(2, 50) g")
	e.waitEvents("wh.public.t", 50)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	m = observe.NewMetrics()
	stop = run(m)
	e.exec("INSERT INTO public.t VALUES (51, 'c')")
	e.waitEvents("wh.public.t", 51)
	if g := m.GrownTopics(); len(g) != 0 {
		t.Fatalf("growth reported again after it was kept: %+v", g)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// addPartitions adds n partitions to topic.
func (e *env) addPartitions(topic string, n int) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreatePartitions(context.Background(), n, topic); err != nil {
		e.t.Fatalf("add %d partitions to %s: %v", n, topic, err)
	}
}

// TestTopicDeleted: a table's topic deleted by an operator (and maybe created again, to clean it
// or to change its settings), while capture runs or while it is stopped, lost every row capture
// wrote to it; written again from the next change on, it would hold only the rows changed since,
// for every sink and replay that reads it from its start. Capture finds it gone or under another
// ID (at start; while running, at its next check, and then starts over), and writes the table to
// it again in full, so the topic ends equal to the table.
func TestTopicDeleted(t *testing.T) {
	for _, tc := range []struct {
		name              string
		stopped, recreate bool
	}{
		{"deleted while running", false, false},
		{"created again while running", false, true},
		{"deleted while stopped", true, false},
		{"created again while stopped", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.s", "public.other")
			e.retry = true
			core, logs := observer.New(zap.InfoLevel)
			e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
			e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text NOT NULL);
				CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO public.s SELECT g, 'v' || g FROM generate_series(1, 200) g; INSERT INTO public.other VALUES (1, 'a')`)
			stop := e.start()
			e.converges("wh.public.s", "public.s")
			e.converges("wh.public.other", "public.other")
			if tc.stopped {
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			if _, err := adm.DeleteTopics(context.Background(), "wh.public.s"); err != nil {
				t.Fatal(err)
			}
			if tc.recreate {
				if _, err := adm.CreateTopic(context.Background(), 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "wh.public.s"); err != nil {
					t.Fatal(err)
				}
			}
			// No change of public.s follows: nothing written to its topic can fail on it.
			e.exec(`UPDATE public.other SET v = 'b'`)
			if tc.stopped {
				e.start()
			}
			e.converges("wh.public.s", "public.s")
			e.converges("wh.public.other", "public.other")
			e.exec(`UPDATE public.s SET v = 'later' WHERE id = 50`)
			e.converges("wh.public.s", "public.s")
			if n := logs.FilterMessageSnippet("re-snapshot queued").FilterField(zap.String("reason", capture.ReasonTopicDeleted)).Len(); n != 1 {
				t.Errorf("%d refreshes queued for the deleted topic, want 1: %v", n, logs.FilterMessageSnippet("re-snapshot queued").All())
			}
		})
	}
}
