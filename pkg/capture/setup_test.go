package capture_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestFormats captures the same changes as JSON and as Avro through a schema registry; the
// first bytes of every value say which, and both decode to the same rows.
func TestFormats(t *testing.T) {
	cases := []struct {
		name     string
		registry bool
		format   string
		magic    byte
	}{
		{"json", false, "json", '{'},
		{"avro with registry", true, "avro", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.f")
			e.exec(`CREATE TABLE public.f (id int PRIMARY KEY, n numeric, at timestamptz, tags text[])`)
			e.exec(`INSERT INTO public.f VALUES (1, 1.50, '2024-01-01 00:00:00+00', '{a,b}')`)
			e.cfg.Kafka.Format = tc.format
			var rc *sr.Client
			if tc.registry {
				reg := srfake.New()
				t.Cleanup(reg.Close)
				e.cfg.Kafka.Registry.URL = reg.URL()
				var err error
				if rc, err = sr.NewClient(sr.URLs(reg.URL())); err != nil {
					t.Fatal(err)
				}
			}
			e.start()
			e.exec(`INSERT INTO public.f VALUES (2, 2.25, '2024-01-02 00:00:00+00', '{c}')`)
			ctx := context.Background()
			var recs []*kgo.Record
			eventually(t, "two records", func() error {
				var err error
				recs, err = testenv.ConsumeAll(ctx, e.kf.Brokers(), "wh.public.f")
				if err != nil || len(recs) < 2 {
					return notYet("%d records (%v)", len(recs), err)
				}
				return nil
			})
			opts := []codec.DecoderOpt{}
			if rc != nil {
				opts = append(opts, codec.DecoderRegistry(rc))
			}
			dec, err := codec.NewDecoder(opts...)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Value[0] != tc.magic {
					t.Errorf("value starts with %#x, want %#x", r.Value[0], tc.magic)
				}
				ev, err := dec.Decode(ctx, r.Topic, r.Key, r.Value)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				id := toString(ev.After["id"])
				want := map[string]string{"1": "1.50", "2": "2.25"}[id]
				if toString(ev.After["n"]) != want {
					t.Errorf("row %s: n = %v, want %s", id, ev.After["n"], want)
				}
			}
		})
	}
}

// TestConfiguredKeyAndSchemaWildcard captures every table of a schema, one of them without a
// primary key but with a configured key, into topics created with the configured partitions and
// cleanup policy; an existing publication missing a table gets it added.
func TestConfiguredKeyAndSchemaWildcard(t *testing.T) {
	e := newEnv(t, "shop.*")
	e.exec(`CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, total int);
		CREATE TABLE shop.log (event text NOT NULL, at int); ALTER TABLE shop.log REPLICA IDENTITY FULL`)
	e.cfg.Source.Postgres.Keys = map[string][]string{"shop.log": {"event"}}
	e.start()
	e.exec(`INSERT INTO shop.orders VALUES (1, 10); INSERT INTO shop.log VALUES ('paid', 1)`)
	for _, topic := range []string{"wh.shop.orders", "wh.shop.log"} {
		ev := e.waitEvents(topic, 1)[0].ev
		if ev.Op != change.OpCreate {
			t.Errorf("%s: op %s", topic, ev.Op)
		}
	}
	logEv := e.waitEvents("wh.shop.log", 1)[0].ev
	if k := logEv.Key(); len(k) != 1 || k["event"] != "paid" {
		t.Errorf("configured key: event key = %v, want {event: paid}", k)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(context.Background(), "wh.shop.orders")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["wh.shop.orders"].Partitions); n != 3 {
		t.Errorf("wh.shop.orders has %d partitions, want 3", n)
	}
	cfgs, err := adm.DescribeTopicConfigs(context.Background(), "wh.shop.orders", "wh._schemas")
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range cfgs {
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != "compact") {
				t.Errorf("%s cleanup.policy = %v, want compact", rc.Name, c.Value)
			}
		}
	}
}

// TestExistingPublicationGetsMissingTables starts with a publication that lacks a configured
// table: capture adds it instead of silently missing its changes.
func TestExistingPublicationGetsMissingTables(t *testing.T) {
	e := newEnv(t, "public.a", "public.b")
	e.exec(`CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY);
		CREATE PUBLICATION backflow FOR TABLE public.a`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.start()
	e.exec(`INSERT INTO public.b VALUES (5)`)
	if ev := e.waitEvents("wh.public.b", 1)[0].ev; ev.After["id"] != int32(5) {
		t.Errorf("public.b event: %v", ev.After)
	}
}

// TestReplicaIdentityIndexKeys: a table without a primary key whose replica identity is a unique
// index (REPLICA IDENTITY USING INDEX) is keyed by that index's columns, which PostgreSQL sends as
// the old key of updates and deletes: read by the snapshot, then streamed, a change of the key
// column included, and ends in the topic as in the table.
func TestReplicaIdentityIndexKeys(t *testing.T) {
	e := newEnv(t, "public.m")
	e.exec(`CREATE TABLE public.m (id int NOT NULL, n int NOT NULL);
		CREATE UNIQUE INDEX m_id ON public.m (id); ALTER TABLE public.m REPLICA IDENTITY USING INDEX m_id;
		INSERT INTO public.m SELECT g, g FROM generate_series(1, 20) g`)
	e.start()
	for _, r := range e.waitEvents("wh.public.m", 20) {
		if k := r.ev.Key(); len(k) != 1 || k["id"] == nil {
			t.Fatalf("snapshot read keyed %v, want by id", k)
		}
	}
	e.exec(`UPDATE public.m SET n = 0 WHERE id = 1; UPDATE public.m SET id = 100 WHERE id = 2; DELETE FROM public.m WHERE id = 3`)
	eventually(t, "the topic equal to the table", func() error {
		return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
	})
}
