package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

func backendCPU(ctx context.Context, c *pgx.Conn) float64 {
	var pid int
	c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid)
	return 0
}

func main() {
	ctx := context.Background()
	pg, err := testenv.StartPostgres(ctx, testenv.PGConf("autovacuum", "off"))
	if err != nil {
		panic(err)
	}
	defer pg.Close()
	conn, _ := pg.Connect(ctx, "postgres")
	conn.Exec(ctx, `CREATE TABLE public.bench (
		id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now())`)
	conn.Exec(ctx, `INSERT INTO public.bench (id, sku, qty, price)
		SELECT g, 'SKU-' || lpad(g::text, 8, '0'), (g % 500)::int, (g % 10000) / 100.0 + 0.99
		FROM generate_series(1, 2000000) g`)
	conn.Exec(ctx, "VACUUM ANALYZE public.bench")
	var pages int64
	conn.QueryRow(ctx, "select relpages from pg_class where relname='bench'").Scan(&pages)
	fmt.Println("pages", pages)
	text := pgx.QueryResultFormats{pgx.TextFormatCode}
	run := func(name string, f func() int) {
		for i := 0; i < 3; i++ {
			t0 := time.Now()
			n := f()
			fmt.Printf("%s rows=%d %.3fs\n", name, n, time.Since(t0).Seconds())
		}
	}
	drain := func(sql string, args ...any) int {
		rows, err := conn.Query(ctx, sql, append([]any{text}, args...)...)
		if err != nil {
			panic(err)
		}
		n := 0
		for rows.Next() {
			_ = rows.RawValues()
			n++
		}
		if rows.Err() != nil {
			panic(rows.Err())
		}
		return n
	}
	run("copy", func() int {
		r, err := conn.PgConn().CopyTo(ctx, discard{}, "COPY public.bench TO STDOUT")
		if err != nil {
			panic(err)
		}
		return int(r.RowsAffected())
	})
	run("keyset", func() int {
		n, last := 0, int64(0)
		for {
			rows, _ := conn.Query(ctx, "SELECT src.id, src.sku, src.qty, src.price, src.updated_at FROM public.bench src WHERE (src.id) > ($1::text::bigint) ORDER BY src.id LIMIT 10000", text, fmt.Sprint(last))
			k := 0
			for rows.Next() {
				v := rows.RawValues()
				fmt.Sscan(string(v[0]), &last)
				k++
			}
			rows.Close()
			n += k
			if k < 10000 {
				return n
			}
		}
	})
	for _, per := range []int64{100, 1000} {
		run(fmt.Sprintf("ctid%d", per), func() int {
			n := 0
			for b := int64(0); b <= pages; b += per {
				n += drain(fmt.Sprintf("SELECT src.id, src.sku, src.qty, src.price, src.updated_at FROM public.bench src WHERE ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid", b, b+per))
			}
			return n
		})
	}
	run("seq", func() int { return drain("SELECT src.id, src.sku, src.qty, src.price, src.updated_at FROM public.bench src") })
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
