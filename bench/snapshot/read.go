package main

// The read alone: what PostgreSQL and a client that discards the rows spend reading the table by
// the chunks capture's snapshot reads (see pkg/capture/pages.go), against COPY.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/bench/internal/child"
)

// readChunk is the rows capture's snapshot reads per chunk by default (snapshot_chunk).
const readChunk = 10_000

// Result formats: capture's for a snapshot chunk of the table (the key, the text and the numeric
// in text, the integer and the timestamptz in binary; see pkg/capture/binvalues.go), and every
// column in text, as capture read them before.
var (
	captureFormats = pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode}
	textFormats    = pgx.QueryResultFormats{pgx.TextFormatCode}
)

// readCols are the table's columns as capture selects them.
const readCols = "SELECT src.id, src.sku, src.qty, src.price, src.updated_at FROM public.bench AS src"

// timeReads reads the table over one connection by page chunks (in capture's result formats, and
// in text only), by key chunks and by COPY, alternately, and keeps the least CPU time its server
// process used for each (the elapsed time of one connection is mostly the client's); it prints
//
//	RESULT snapshot_read rows=… pages_cpu_s=… pages_text_cpu_s=… keys_cpu_s=… copy_cpu_s=… pages_ratio=… keys_ratio=…
//
// where a ratio is the server's CPU for COPY over its CPU for the read (1: as cheap as COPY).
func timeReads(ctx context.Context, conn *pgx.Conn, rows int, rounds int) error {
	var pages int64
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size('public.bench') / current_setting('block_size')::int8, pg_backend_pid()").
		Scan(&pages, &pid); err != nil {
		return fmt.Errorf("pages of %s: %w", table, err)
	}
	step := max(1, pages*readChunk/int64(rows)) // the pages of readChunk rows, as capture sizes them
	var byPages, byPagesText, byKeys, byCopy time.Duration
	for range rounds {
		for _, f := range []struct {
			formats pgx.QueryResultFormats
			best    *time.Duration
		}{{captureFormats, &byPages}, {textFormats, &byPagesText}} {
			d, err := timeRead(ctx, conn, pid, rows, f.formats, func(read func(sql string, args ...any) (int, error)) error {
				for at := int64(0); at < pages; at += step {
					if _, err := read(readCols+" WHERE src.ctid >= $1::text::tid AND src.ctid < $2::text::tid",
						fmt.Sprintf("(%d,0)", at), fmt.Sprintf("(%d,0)", at+step)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			*f.best = fastest(*f.best, d)
		}
		d, err := timeRead(ctx, conn, pid, rows, captureFormats, func(read func(sql string, args ...any) (int, error)) error {
			for last := int64(0); ; last += readChunk { // ids are 1…rows, dense
				n, err := read(readCols+" WHERE (src.id) > ($1::text::bigint) ORDER BY src.id LIMIT "+fmt.Sprint(readChunk),
					fmt.Sprint(last))
				if err != nil || n < readChunk {
					return err
				}
			}
		})
		if err != nil {
			return err
		}
		byKeys = fastest(byKeys, d)
		cpu0 := child.ProcCPU(pid)
		if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM public.bench) TO STDOUT"); err != nil {
			return fmt.Errorf("copy %s: %w", table, err)
		}
		byCopy = fastest(byCopy, child.ProcCPU(pid)-cpu0)
	}
	child.Progress("reading the table alone, the server's CPU: by pages %s (in text only %s), by keys %s, COPY %s",
		byPages.Round(time.Millisecond), byPagesText.Round(time.Millisecond), byKeys.Round(time.Millisecond), byCopy.Round(time.Millisecond))
	fmt.Printf("RESULT snapshot_read rows=%d pages_cpu_s=%.2f pages_text_cpu_s=%.2f keys_cpu_s=%.2f copy_cpu_s=%.2f pages_ratio=%.3f keys_ratio=%.3f\n",
		rows, byPages.Seconds(), byPagesText.Seconds(), byKeys.Seconds(), byCopy.Seconds(), byCopy.Seconds()/byPages.Seconds(),
		byCopy.Seconds()/byKeys.Seconds())
	return nil
}

// timeRead returns the CPU time server process pid used while chunks read the table with the
// read it is given (its results in formats), and checks that it read every row once.
func timeRead(ctx context.Context, conn *pgx.Conn, pid, rows int, formats pgx.QueryResultFormats,
	chunks func(read func(sql string, args ...any) (int, error)) error) (time.Duration, error) {
	total := 0
	read := func(sql string, args ...any) (int, error) {
		rs, err := conn.Query(ctx, sql, append([]any{formats}, args...)...)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", table, err)
		}
		n := 0
		for rs.Next() {
			_ = rs.RawValues()
			n++
		}
		if err := rs.Err(); err != nil {
			return 0, fmt.Errorf("read %s: %w", table, err)
		}
		total += n
		return n, nil
	}
	cpu0 := child.ProcCPU(pid)
	if err := chunks(read); err != nil {
		return 0, err
	}
	d := child.ProcCPU(pid) - cpu0
	if total != rows {
		return 0, fmt.Errorf("read %d rows of %s, want %d", total, table, rows)
	}
	return d, nil
}

func fastest(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}
