package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// benchTable is the 6-column table of the upsert benchmarks.
const benchTable = `CREATE TABLE bench (id bigint PRIMARY KEY, sku text NOT NULL, qty int, price numeric(12,2),
	active bool, updated_at timestamptz)`

func benchBatch(n int, base int64, gen int) *sink.Batch {
	recs := make([]sink.Record, n)
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := range recs {
		id := base + int64(i)
		recs[i] = sink.Record{Op: sink.OpUpsert, Key: map[string]any{"id": id},
			Fields: map[string]any{"id": id, "sku": "SKU-" + strconv.FormatInt(id, 10), "qty": int32(i % 1000),
				"price": strconv.Itoa(i%10000) + "." + strconv.Itoa(10+gen%90), "active": i%2 == 0,
				"updated_at": ts.Add(time.Duration(gen) * time.Second)},
			KeyOrder: []string{"id"}, FieldOrder: []string{"id", "sku", "qty", "price", "active", "updated_at"},
			Topic: "bench", Offset: id}
	}
	return &sink.Batch{Sink: "bench", Topic: "bench", Records: recs, NextOffset: base + int64(n)}
}

// BenchmarkApply compares the ways of writing a large batch, end to end from sink.Records
// (value conversion included) to commit, on the testenv PostgreSQL (fsync off, loopback):
//   - unnest: what Apply does for upserts, every column as a text[] parameter of one
//     INSERT … SELECT … FROM unnest(…) ON CONFLICT, sent with the offset upsert as one pipeline;
//   - copy: binary COPY of the same text values into a temporary staging table, then one
//     INSERT … SELECT … FROM the staging table ON CONFLICT, and the offset upsert;
//   - created: what Apply does when every record created its row: COPY straight into the
//     table (insert batches only; update batches would fall back to unnest).
//
// "insert" batches have new keys, "update" batches rewrite existing rows.
//
//	go test ./connectors/postgres -run '^$' -bench Apply -benchtime 20x
func BenchmarkApply(b *testing.B) {
	for _, size := range []int{1000, 10000, 100000} {
		for _, kind := range []string{"insert", "update"} {
			for _, path := range []string{"unnest", "copy", "created"} {
				if path == "created" && kind == "update" {
					continue
				}
				b.Run(fmt.Sprintf("%s/%s/rows=%d", path, kind, size), func(b *testing.B) {
					benchApply(b, path, kind, size)
				})
			}
		}
	}
}

func benchApply(b *testing.B, path, kind string, size int) {
	d := newDB(b, nil)
	d.exec(benchTable)
	c := d.open(map[string]any{"table": "bench"}, "id")
	ctx := context.Background()
	run := func(bt *sink.Batch) {
		var err error
		switch path {
		case "unnest", "created":
			err = c.Apply(ctx, bt)
		default:
			err = applyCopy(ctx, c, bt)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if kind == "update" {
		run(benchBatch(size, 0, 0))
	}
	// build the batches before timing, as the runtime hands them over built
	batches := make([]*sink.Batch, b.N)
	for i := range batches {
		base := int64(0)
		if kind == "insert" {
			base = int64(size) * int64(i+1)
		}
		batches[i] = benchBatch(size, base, i+1)
		if path == "created" {
			batches[i].Records = created(batches[i].Records...)
		}
	}
	d.exec("VACUUM ANALYZE bench")
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		run(batches[i])
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if path == "created" && c.copies.Load() != int64(b.N) {
		b.Fatalf("%d of %d batches went by COPY", c.copies.Load(), b.N)
	}
	b.ReportMetric(float64(size*b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(0, "ns/op")
}

// applyCopy is the COPY alternative, kept here to compare against: the plan's text arrays are
// copied into a temporary table of text columns, then upserted with the same casts.
func applyCopy(ctx context.Context, c *Connector, b *sink.Batch) error {
	t := c.target.Load()
	p, err := t.plan(b)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		for _, st := range p.steps {
			if err := execStep(ctx, tx, st, true); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, c.offUpsert, b.Sink, b.Topic, b.Partition, b.NextOffset)
		return err
	})
}

// execStep runs a step as Apply does, or, for upserts with viaCopy, by binary COPY of its
// parameters into a staging table and the same statement reading that table.
func execStep(ctx context.Context, tx pgx.Tx, st step, viaCopy bool) error {
	if !viaCopy || st.what != "upsert into" {
		_, err := tx.Exec(ctx, st.sql, st.args...)
		return err
	}
	n := len(st.args)
	stage := fmt.Sprintf("bf_stage_%d", n)
	cols := make([]string, n)
	for i := range cols {
		cols[i] = alias(i)
	}
	if _, err := tx.Exec(ctx, stageDDL(n)); err != nil {
		return err
	}
	row := make([]any, n)
	i := -1
	_, err := tx.CopyFrom(ctx, pgx.Identifier{stage}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		i++
		if i >= st.rows {
			return nil, nil
		}
		for j := range row {
			row[j] = st.args[j].(textColumn)[i]
		}
		return row, nil
	}))
	if err != nil {
		return err
	}
	sql := strings.Replace(st.sql, unnestFrom(n), stage+" AS u", 1)
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func stageDDL(n int) string {
	defs := make([]string, n)
	for i := range defs {
		defs[i] = alias(i) + " text"
	}
	return fmt.Sprintf("CREATE TEMP TABLE IF NOT EXISTS bf_stage_%d (%s) ON COMMIT DELETE ROWS", n, strings.Join(defs, ", "))
}

// BenchmarkStatement measures the upsert statement alone, from converted values to its result,
// in a transaction rolled back after each run so that every run meets the same table: the
// server's and the wire's share of BenchmarkApply, less noisy on a busy machine.
//
//	go test ./connectors/postgres -run '^$' -bench Statement -benchtime 10x
func BenchmarkStatement(b *testing.B) {
	for _, size := range []int{1000, 10000, 100000} {
		for _, kind := range []string{"insert", "update"} {
			for _, path := range []string{"unnest", "copy", "created"} {
				if path == "created" && kind == "update" {
					continue
				}
				b.Run(fmt.Sprintf("%s/%s/rows=%d", path, kind, size), func(b *testing.B) {
					benchStatement(b, path == "copy", kind, size)
				})
			}
		}
	}
}

func benchStatement(b *testing.B, viaCopy bool, kind string, size int) {
	ctx := context.Background()
	d := newDB(b, nil)
	d.exec(benchTable)
	c := d.open(map[string]any{"table": "bench"}, "id")
	if err := c.Apply(ctx, benchBatch(size, 0, 0)); err != nil {
		b.Fatal(err)
	}
	d.exec("VACUUM ANALYZE bench")
	base := int64(0)
	if kind == "insert" {
		base = int64(size)
	}
	p, err := c.target.Load().plan(benchBatch(size, base, 1))
	if err != nil {
		b.Fatal(err)
	}
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, stageDDL(len(p.steps[0].args))); err != nil { // kept by the session, as in use
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i <= b.N; i++ { // one more: the first run prepares the statement
		tx, err := conn.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := execStep(ctx, tx, p.steps[0], viaCopy); err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			total += time.Since(start)
		}
		if err := tx.Rollback(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size*b.N)/total.Seconds(), "rows/s")
	b.ReportMetric(0, "ns/op")
}
