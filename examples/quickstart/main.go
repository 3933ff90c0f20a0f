// Command quickstart is what `make run` starts: a local PostgreSQL with demo tables, the embedded
// Kafka broker, capture, a writer making demo changes, and a live view of the change topics.
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/model"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const pgPort = 55432

const storefrontSchema = `
CREATE TABLE IF NOT EXISTS public.stock (
	sku text, warehouse text, available int NOT NULL, price_cents bigint NOT NULL,
	synced_at timestamptz NOT NULL, PRIMARY KEY (sku, warehouse));
CREATE TABLE IF NOT EXISTS public.lead_activity (email text PRIMARY KEY, score bigint NOT NULL, events bigint NOT NULL);`

const schema = `
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE TABLE IF NOT EXISTS public.inventory (
	sku text, warehouse text, qty int NOT NULL, reserved int NOT NULL DEFAULT 0,
	price numeric(10,2) NOT NULL, active bool NOT NULL DEFAULT true, updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (sku, warehouse));
CREATE TABLE IF NOT EXISTS public.events (
	id bigserial PRIMARY KEY, email text NOT NULL, kind text NOT NULL, points int NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS analytics.lead_scores (
	email text PRIMARY KEY, score int NOT NULL, segment text, scored_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.inventory (sku, warehouse, qty, price)
	SELECT 'SKU-' || lpad(g::text, 3, '0'), w, 50 + g, 9.99 + g FROM generate_series(1, 20) g, unnest(ARRAY['ams', 'nyc']) w
	ON CONFLICT DO NOTHING;
INSERT INTO analytics.lead_scores (email, score, segment)
	SELECT 'lead' || g || '@example.com', 10 * g % 100, 'smb' FROM generate_series(1, 10) g
	ON CONFLICT DO NOTHING;`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load("examples/quickstart/pipeline.yaml")
	if err != nil {
		return err
	}
	log := consoleLogger()
	defer log.Sync() //nolint:errcheck

	fmt.Println("▶ starting a local PostgreSQL (wal_level=logical) on 127.0.0.1:", pgPort)
	pg, err := testenv.StartPostgres(ctx, testenv.PGDir(pgDir(cfg.DataDir)), testenv.PGPort(pgPort))
	if err != nil {
		return err
	}
	defer pg.Close()
	for db, ddl := range map[string]string{"warehouse": schema, "storefront": storefrontSchema} {
		if err := pg.CreateDatabase(ctx, db); err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
		if err := pg.ExecIn(ctx, db, ddl); err != nil {
			return fmt.Errorf("create demo tables in %s: %w", db, err)
		}
	}
	fmt.Printf("  warehouse:  psql %s\n  storefront: psql %s\n", pg.URL("warehouse"), pg.URL("storefront"))

	emb, err := kafka.StartEmbedded(ctx, cfg.DataDir, 0, log)
	if err != nil {
		return err
	}
	defer emb.Close()
	cfg.Kafka.Brokers = emb.Brokers()

	var sinks []*sink.Sink
	for _, sc := range cfg.Sinks {
		s, err := sink.New(ctx, cfg, sc, connectors.Factories(), sink.WithLogger(log))
		if err != nil {
			return err
		}
		defer s.Close()
		sinks = append(sinks, s)
	}
	models, err := model.NewRunner(cfg, model.WithLogger(log))
	if err != nil {
		return err
	}
	defer models.Close()
	sched := model.NewScheduler(models)

	// Everything stops before the broker and the database close (deferred above).
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return capture.New(cfg, capture.WithLogger(log), capture.WithCommitHook(sched.Committed)).RunWithRetry(gctx)
	})
	g.Go(func() error { return sched.Run(gctx) })
	for _, s := range sinks {
		g.Go(func() error { return s.Run(gctx) })
	}
	g.Go(func() error { return writeDemoChanges(gctx, pg) })
	g.Go(func() error { return watch(gctx, cfg) })
	g.Go(func() error { return watchStorefront(gctx, pg) })
	fmt.Println("▶ capture, the lead_activity model and the sinks running; demo writes every second; Ctrl-C to stop")
	return g.Wait()
}

// writeDemoChanges sells stock, restocks, and rescores leads, like a busy warehouse would.
func writeDemoChanges(ctx context.Context, pg *testenv.Postgres) error {
	conn, err := pg.Connect(ctx, "warehouse")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		sku := fmt.Sprintf("SKU-%03d", 1+rand.IntN(20))
		stmts := []string{
			fmt.Sprintf(`UPDATE public.inventory SET qty = greatest(qty - %d, 0), updated_at = now() WHERE sku = '%s' AND warehouse = 'ams'`, 1+rand.IntN(5), sku),
			fmt.Sprintf(`UPDATE analytics.lead_scores SET score = %d, scored_at = now() WHERE email = 'lead%d@example.com'`, rand.IntN(100), 1+rand.IntN(10)),
			fmt.Sprintf(`INSERT INTO public.events (email, kind, points) VALUES ('lead%d@example.com', 'page_view', %d)`, 1+rand.IntN(10), 1+rand.IntN(10)),
		}
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil && ctx.Err() == nil {
				return fmt.Errorf("demo write: %w", err)
			}
		}
	}
}

// watch prints every change that reaches the topics, decoded from Avro.
func watch(ctx context.Context, cfg *config.Pipeline) error {
	topics := []string{"wh.public.inventory", "wh.analytics.lead_scores", "wh.public.events", "wh.model.lead_activity"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ConsumeTopics(append(topics, "wh._schemas")...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	store := codec.NewSchemaStore()
	dec, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == "wh._schemas" {
				_, _ = store.Add(r.Value)
				return
			}
			ev, err := dec.Decode(ctx, r.Topic, r.Key, r.Value)
			if err != nil || ev == nil {
				return
			}
			fmt.Printf("  warehouse → kafka  %-26s %s  %s\n", r.Topic, ev.Op, describe(ev.After))
		})
	}
	return nil
}

// watchStorefront prints the storefront's stock rows as the sink writes them.
func watchStorefront(ctx context.Context, pg *testenv.Postgres) error {
	conn, err := pg.Connect(ctx, "storefront")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	since := time.Now().Add(-time.Hour)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rows, err := conn.Query(ctx, `SELECT sku, warehouse, available, price_cents, synced_at FROM public.stock
			WHERE synced_at > $1 ORDER BY synced_at`, since)
		if err != nil {
			return fmt.Errorf("read storefront: %w", err)
		}
		for rows.Next() {
			var sku, wh string
			var avail, cents int64
			if err := rows.Scan(&sku, &wh, &avail, &cents, &since); err != nil {
				return err
			}
			fmt.Printf("  kafka → storefront  public.stock  %s/%s available=%d price_cents=%d\n", sku, wh, avail, cents)
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
}

func describe(row change.Row) string {
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, row[k]))
	}
	return strings.Join(parts, " ")
}

func consoleLogger() *zap.Logger {
	zc := zap.NewDevelopmentConfig()
	zc.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	zc.DisableStacktrace = true
	zc.Level = zap.NewAtomicLevelAt(zap.InfoLevel)
	l, _ := zc.Build()
	return l
}

// pgDir is where the quickstart cluster lives: under the data dir, except when running as root,
// where the server runs as the postgres user, who may not be able to reach the checkout.
func pgDir(dataDir string) string {
	if os.Geteuid() == 0 {
		return filepath.Join(os.TempDir(), "backflow-quickstart-postgres")
	}
	if a, err := filepath.Abs(filepath.Join(dataDir, "postgres")); err == nil {
		return a
	}
	return filepath.Join(dataDir, "postgres")
}
