// Command shopify benchmarks the shopify connector under Shopify's cost-based rate limit (see
// the README, "Benchmarks" and issue "CRM and storefront connectors").
//
// One run: start the in-process Shopify stub (connectors/shopify/shopifytest) with a cost bucket
// of -maximum points restoring -restore points a second, every inventorySetQuantities call
// costing -cost points, and a shop of -skus SKUs stocked at -warehouses locations. Build the
// connector against it and warm its lookup caches with one pass over every level (a streaming
// sink has warm caches; lookups are not what is measured). Then, for -duration, -concurrency
// workers (partitions, each with its own levels) apply batches of -batch stock changes, every
// record a new change (its own LSN) with a new quantity. At the end every level must hold the
// last quantity sent to it.
//
// The bucket allows (points available at the start + restore × elapsed) / cost calls in the
// measured time, each of up to 250 quantities: allowed_per_s is that record rate. The last line
// printed (stdout) is
//
//	RESULT shopify records_per_s=… allowed_per_s=… rejected_429_pct=… ratio=… …
//
// where rejected_429_pct is the share of requests answered THROTTLED (HTTP 429 with
// -throttle-429, HTTP 200 otherwise). Targets: ratio ≥ 0.9, rejected_429_pct < 1. The connector
// cuts each batch into calls of 250: keep -batch and the levels per worker (skus × warehouses /
// concurrency) multiples of 250, as the defaults are, or the last call of each batch is partial
// and the ratio shows that rather than the pacing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backflow-dev/backflow/connectors/shopify"
	"github.com/backflow-dev/backflow/connectors/shopify/shopifytest"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

type options struct {
	duration    time.Duration
	maximum     float64
	restore     float64
	cost        int
	skus        int
	warehouses  int
	batch       int
	concurrency int
	throttle429 bool
}

// levelRef is one inventory level of the stub shop.
type levelRef struct{ sku, warehouse string }

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 25*time.Second, "measured time")
	flag.Float64Var(&o.maximum, "maximum", 1000, "the bucket's maximumAvailable (points)")
	flag.Float64Var(&o.restore, "restore", 50, "the bucket's restoreRate (points per second)")
	flag.IntVar(&o.cost, "cost", 10, "cost of one inventorySetQuantities call (points)")
	flag.IntVar(&o.skus, "skus", 500, "SKUs in the shop")
	flag.IntVar(&o.warehouses, "warehouses", 4, "locations every SKU is stocked at")
	flag.IntVar(&o.batch, "batch", 1000, "records per Apply")
	flag.IntVar(&o.concurrency, "concurrency", 2, "partitions applied at once, each on its own levels")
	flag.BoolVar(&o.throttle429, "throttle-429", false, "the stub answers THROTTLED with HTTP 429 instead of 200")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench shopify:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	srv := shopifytest.New(shopifytest.Config{MaximumAvailable: o.maximum, RestoreRate: o.restore,
		MutationCost: o.cost, Throttle429: o.throttle429})
	defer srv.Close()
	parts := stock(srv, o)
	conn, err := shopify.New(context.Background(), sink.Params{Sink: "bench", Key: []string{"sku", "warehouse"},
		With: map[string]any{"base_url": srv.URL, "token": shopifytest.DefaultToken}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	var lsn atomic.Int64
	fmt.Fprintf(os.Stderr, "warming the lookup caches over %d levels…\n", o.skus*o.warehouses)
	for p, levels := range parts {
		if err := applyAll(ctx, conn, p, levels, &lsn); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return measure(ctx, o, srv, conn, parts, &lsn)
}

// stock creates the shop and splits its levels among the partitions.
func stock(srv *shopifytest.Server, o options) [][]levelRef {
	locs := make([]string, o.warehouses)
	names := make([]string, o.warehouses)
	for i := range locs {
		names[i] = fmt.Sprintf("WH-%02d", i)
		locs[i] = srv.AddLocation(names[i])
	}
	parts := make([][]levelRef, o.concurrency)
	for s := range o.skus {
		sku := fmt.Sprintf("SKU-%06d", s)
		srv.AddVariant(sku, locs...)
		for _, wh := range names {
			parts[s%o.concurrency] = append(parts[s%o.concurrency], levelRef{sku, wh})
		}
	}
	return parts
}

// applyAll applies one change to every level, in batches.
func applyAll(ctx context.Context, conn sink.Connector, part int, levels []levelRef, lsn *atomic.Int64) error {
	for start := 0; start < len(levels); start += 1000 {
		if err := conn.Apply(ctx, batch(part, levels[start:min(start+1000, len(levels))], lsn, 0)); err != nil {
			return err
		}
	}
	return nil
}

// batch makes one record per level: a new change setting quantity seq.
func batch(part int, levels []levelRef, lsn *atomic.Int64, seq int) *sink.Batch {
	b := &sink.Batch{Sink: "bench", Topic: "wh.public.inventory", Partition: int32(part)}
	for _, l := range levels {
		n := lsn.Add(1)
		b.Records = append(b.Records, sink.Record{Op: sink.OpUpsert,
			Key:    map[string]any{"sku": l.sku, "warehouse": l.warehouse},
			Fields: map[string]any{"sku": l.sku, "warehouse": l.warehouse, "available": int64(seq)},
			Event:  &change.Event{Op: change.OpUpdate, Source: change.Source{LSN: n, TxID: n}},
			Topic:  b.Topic, Partition: b.Partition, Offset: n})
	}
	return b
}

// result is what the measured run did.
type result struct {
	records  int64
	elapsed  time.Duration
	start    float64 // bucket points available at the start
	requests int
	throttle int
	calls    int
}

func measure(ctx context.Context, o options, srv *shopifytest.Server, conn sink.Connector, parts [][]levelRef, lsn *atomic.Int64) error {
	avail, _, _ := srv.Bucket()
	srv.ResetCounters()
	fmt.Fprintf(os.Stderr, "measuring for %s with %d worker(s), bucket at %.0f of %.0f points, %.0f/s, %d a call…\n",
		o.duration, o.concurrency, avail, o.maximum, o.restore, o.cost)
	var records atomic.Int64
	last := make([]int, len(parts))
	errs := make(chan error, len(parts))
	begin := time.Now()
	deadline := begin.Add(o.duration)
	var wg sync.WaitGroup
	for p, levels := range parts {
		wg.Go(func() {
			n, seq, err := work(ctx, conn, p, levels, o.batch, deadline, lsn)
			records.Add(n)
			last[p] = seq
			errs <- err
		})
	}
	wg.Wait()
	r := result{records: records.Load(), elapsed: time.Since(begin), start: avail}
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	n := srv.Counters()
	r.requests, r.throttle, r.calls = n.Requests, n.Throttled, n.Mutations
	if err := verify(srv, parts, last); err != nil {
		return err
	}
	report(o, r)
	return nil
}

// work applies batches to its levels until the deadline; it returns the records applied and
// the sequence number (quantity) of the last pass over the levels.
func work(ctx context.Context, conn sink.Connector, part int, levels []levelRef, size int, deadline time.Time, lsn *atomic.Int64) (int64, int, error) {
	var n int64
	seq, pos := 1, 0
	size = min(size, len(levels))
	for time.Now().Before(deadline) {
		chunk := levels[pos:min(pos+size, len(levels))]
		if err := conn.Apply(ctx, batch(part, chunk, lsn, seq)); err != nil {
			return n, seq, fmt.Errorf("apply: %w", err)
		}
		n += int64(len(chunk))
		if pos += len(chunk); pos == len(levels) {
			pos, seq = 0, seq+1
		}
	}
	if pos > 0 { // finish the pass, so every level ends at the same sequence number
		if err := conn.Apply(ctx, batch(part, levels[pos:], lsn, seq)); err != nil {
			return n, seq, fmt.Errorf("apply: %w", err)
		}
		n += int64(len(levels) - pos)
		return n, seq, nil
	}
	return n, seq - 1, nil
}

// verify checks every level holds the last quantity sent to it: nothing was lost.
func verify(srv *shopifytest.Server, parts [][]levelRef, last []int) error {
	for p, levels := range parts {
		for _, l := range levels {
			q, ok := srv.QuantityOf(l.sku, l.warehouse, "available")
			if !ok || q != last[p] {
				return fmt.Errorf("level %s at %s holds %d, want %d: a change was lost", l.sku, l.warehouse, q, last[p])
			}
		}
	}
	return nil
}

func report(o options, r result) {
	secs := r.elapsed.Seconds()
	perS := float64(r.records) / secs
	allowed := (r.start + o.restore*secs) / float64(o.cost) * shopify.MaxQuantities / secs
	rejected := 0.0
	if r.requests > 0 {
		rejected = 100 * float64(r.throttle) / float64(r.requests)
	}
	fmt.Fprintf(os.Stderr, "%d records in %.1fs over %d calls (%d requests, %d THROTTLED)\n",
		r.records, secs, r.calls, r.requests, r.throttle)
	fmt.Printf("RESULT shopify records_per_s=%.0f allowed_per_s=%.0f rejected_429_pct=%.2f ratio=%.3f calls=%d requests=%d throttled=%d duration_s=%.1f restore_rate=%.0f maximum_available=%.0f cost_per_call=%d concurrency=%d\n",
		perS, allowed, rejected, perS/allowed, r.calls, r.requests, r.throttle, secs, o.restore, o.maximum, o.cost, o.concurrency)
}
