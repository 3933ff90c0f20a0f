// Command hubspot benchmarks the HubSpot connector's throughput under HubSpot's rate limit (see
// the README, "Benchmarks").
//
// It starts the hubspottest stub in this process, allowing -per10s requests per rolling 10-second
// window with -latency per request, and drives the connector's Apply from -workers goroutines
// (as a sink with that concurrency would), each applying batches of -batch new contacts, retrying
// transient errors after their delay like the sink runtime, for -duration. With 100 inputs a
// request the allowed record rate is per10s / 10 × 100 records/s. The last line printed is
//
//	RESULT hubspot records_per_s=… allowed_per_s=… rejected_429_pct=… ratio=… requests=… duration_s=…
//
// Targets: records_per_s at least 90% of allowed_per_s, rejected_429_pct under 1. Every record
// must be stored in the stub at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backflow-dev/backflow/connectors/hubspot"
	"github.com/backflow-dev/backflow/connectors/hubspot/hubspottest"
	"github.com/backflow-dev/backflow/pkg/sink"
)

type options struct {
	duration time.Duration
	per10s   int
	batch    int
	workers  int
	latency  time.Duration
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 25*time.Second, "how long to keep submitting batches")
	flag.IntVar(&o.per10s, "per10s", 100, "requests the stub allows per rolling 10 s (and the connector's requests_per_10s)")
	flag.IntVar(&o.batch, "batch", 1000, "records per Apply")
	flag.IntVar(&o.workers, "workers", 4, "concurrent Apply calls")
	flag.DurationVar(&o.latency, "latency", 150*time.Millisecond, "stub latency per request")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench hubspot:", err)
		os.Exit(1)
	}
}

// run drives the connector against the stub and prints the RESULT line.
func run(o options) error {
	srv := hubspottest.NewServer(hubspottest.Options{RequestsPerWindow: o.per10s, Latency: o.latency})
	defer srv.Close()
	conn, err := hubspot.New(context.Background(), sink.Params{Sink: "bench", Key: []string{"email"},
		With: map[string]any{"token": hubspottest.DefaultToken, "object_type": "contacts", "base_url": srv.URL, "requests_per_10s": o.per10s}})
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(os.Stderr, "applying batches of %d records from %d workers for %v against a stub allowing %d requests/10s\n",
		o.batch, o.workers, o.duration, o.per10s)
	applied, elapsed, err := drive(conn, o)
	if err != nil {
		return err
	}
	return report(srv, o, applied, elapsed)
}

// drive runs the workers and returns how many records they applied and how long it took.
func drive(conn sink.Connector, o options) (int64, time.Duration, error) {
	var applied, seq atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, o.workers)
	start := time.Now()
	deadline := start.Add(o.duration)
	for range o.workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				b := batch(&seq, o.batch)
				if err := applyRetrying(conn, b); err != nil {
					errs <- err
					return
				}
				applied.Add(int64(len(b.Records)))
			}
		})
	}
	go progress(&applied, start, deadline)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return applied.Load(), elapsed, <-errs
}

// batch makes n upserts of new contacts.
func batch(seq *atomic.Int64, n int) *sink.Batch {
	b := &sink.Batch{Sink: "bench", Topic: "wh.analytics.lead_scores", Records: make([]sink.Record, n)}
	for i := range b.Records {
		id := seq.Add(1)
		email := fmt.Sprintf("lead%d@example.com", id)
		b.Records[i] = sink.Record{Op: sink.OpUpsert, Key: map[string]any{"email": email}, Offset: id,
			Fields: map[string]any{"email": email, "lead_score": float64(id%1000) / 10, "lifecyclestage": "lead", "updated_at": time.Now()}}
	}
	return b
}

// applyRetrying applies b as the sink runtime does: transient errors are retried after the
// server-given delay (at least 100 ms); anything else ends the benchmark.
func applyRetrying(conn sink.Connector, b *sink.Batch) error {
	for {
		err := conn.Apply(context.Background(), b)
		if err == nil {
			return nil
		}
		var pe *sink.PartialError
		if errors.As(err, &pe) || !sink.IsRetryable(err) {
			return fmt.Errorf("apply: %w", err)
		}
		time.Sleep(max(sink.RetryDelay(err), 100*time.Millisecond))
	}
}

// progress prints the record rate every 5 seconds until the deadline.
func progress(applied *atomic.Int64, start, deadline time.Time) {
	for t := time.NewTicker(5 * time.Second); time.Now().Before(deadline); <-t.C {
		if s := time.Since(start).Seconds(); s > 1 {
			fmt.Fprintf(os.Stderr, "  %4.0fs  %8d records  %6.0f records/s\n", s, applied.Load(), float64(applied.Load())/s)
		}
	}
}

// report checks that the stub holds every record and prints the RESULT line.
func report(srv *hubspottest.Server, o options, applied int64, elapsed time.Duration) error {
	cnt := srv.Counters()
	if stored := srv.ObjectCount("contacts"); int64(stored) != applied {
		return fmt.Errorf("the stub holds %d contacts, %d were applied", stored, applied)
	}
	perS := float64(applied) / elapsed.Seconds()
	allowed := float64(o.per10s) / 10 * hubspot.MaxInputs
	pct := 0.0
	if cnt.Requests > 0 {
		pct = 100 * float64(cnt.RateLimited) / float64(cnt.Requests)
	}
	fmt.Printf("RESULT hubspot records_per_s=%.0f allowed_per_s=%.0f rejected_429_pct=%.2f ratio=%.3f requests=%d duration_s=%.1f\n",
		perS, allowed, pct, perS/allowed, cnt.Requests, elapsed.Seconds())
	return nil
}
