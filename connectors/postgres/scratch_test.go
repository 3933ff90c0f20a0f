package postgres

import (
	"context"
	"fmt"
	"github.com/jackc/pgx/v5/pgtype"
	"os"
	"strings"
	"testing"
)

func TestScratch(t *testing.T) {
	q := os.Getenv("SCRATCH")
	if q == "" {
		t.Skip()
	}
	d := newDB(t, nil)
	for _, s := range strings.Split(q, ";;") {
		rs, err := d.conn.Query(context.Background(), s)
		if err != nil {
			t.Logf("%s: %v", s, err)
			continue
		}
		for rs.Next() {
			vals := rs.RawValues()
			var parts []string
			for _, v := range vals {
				parts = append(parts, string(v))
			}
			t.Logf("%s => %q", s, parts)
		}
		if err := rs.Err(); err != nil {
			t.Logf("%s: %v", s, err)
		}
		rs.Close()
	}
}

func BenchmarkPlanOnly(b *testing.B) {
	d := newDB(b, nil)
	d.exec(benchTable)
	c := d.open(map[string]any{"table": "bench"}, "id")
	bt := benchBatch(10000, 0, 1)
	t := c.target.Load()
	b.ResetTimer()
	for range b.N {
		if _, err := t.plan(bt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeOnly(b *testing.B) {
	d := newDB(b, nil)
	d.exec(benchTable)
	c := d.open(map[string]any{"table": "bench"}, "id")
	bt := benchBatch(10000, 0, 1)
	t := c.target.Load()
	p, _ := t.plan(bt)
	m := pgtype.NewMap()
	var buf []byte
	b.ResetTimer()
	for range b.N {
		for _, a := range p.steps[0].args {
			var err error
			buf, err = m.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, a, buf[:0])
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkChunked(b *testing.B) {
	for _, ch := range []int{1 << 30, 20000, 10000, 5000} {
		for _, kind := range []string{"insert", "update"} {
			b.Run(fmt.Sprintf("chunk=%d/%s", ch, kind), func(b *testing.B) {
				chunkRows = ch
				defer func() { chunkRows = 1 << 30 }()
				benchApply(b, "unnest", kind, 100000)
			})
		}
	}
}

func BenchmarkCompare(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		for _, kind := range []string{"insert", "update"} {
			for _, path := range []string{"unnest", "chunk5k", "copy"} {
				b.Run(fmt.Sprintf("%s/%s/rows=%d", path, kind, size), func(b *testing.B) {
					p := path
					if path == "chunk5k" {
						chunkRows = 5000
						defer func() { chunkRows = 1 << 30 }()
						p = "unnest"
					}
					benchApply(b, p, kind, size)
				})
			}
		}
	}
}
