// Command salesforce benchmarks the salesforce connector's throughput under an API request
// budget (see the README, "Benchmarks").
//
// It starts the stand-in Salesforce of connectors/salesforce/sftest in this process, allowing
// -budget data API requests per -window (more are answered 403 REQUEST_LIMIT_EXCEEDED) with
// -latency per request, and drives the connector's Apply from -partitions goroutines, each
// applying -batch upserts at a time (sObject Collections, 200 records a request), for -duration.
// Like the sink runtime, a retryable error waits (RetryDelay, or 100ms) and applies the same batch
// again. The connector paces itself with with.requests_per_second = -pace × budget/window.
// The last line printed (to stdout) is
//
//	RESULT salesforce records_per_s=… allowed_per_s=… rejected_429_pct=… …
//
// where allowed_per_s is the budget's record rate (budget/window × 200) and rejected_429_pct the
// share of data API requests answered REQUEST_LIMIT_EXCEEDED. Progress goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/backflow-dev/backflow/connectors/salesforce"
	"github.com/backflow-dev/backflow/connectors/salesforce/sftest"
	"github.com/backflow-dev/backflow/pkg/sink"
)

const (
	clientID     = "bench-client"
	clientSecret = "bench-secret"
	sobject      = "Lead"
	extField     = "Warehouse_Id__c"
	keysPerPart  = 50_000 // keys cycle, so the stub's store stays bounded
)

type options struct {
	duration       time.Duration
	budget         int
	window         time.Duration
	latency        time.Duration
	batch          int
	partitions     int
	maxConcurrency int
	pace           float64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 25*time.Second, "how long to apply batches")
	flag.IntVar(&o.budget, "budget", 50, "data API requests the stub allows per window")
	flag.DurationVar(&o.window, "window", time.Second, "the stub's budget window")
	flag.DurationVar(&o.latency, "latency", 20*time.Millisecond, "the stub's latency per request")
	flag.IntVar(&o.batch, "batch", 1000, "upserts per Apply (at most with.bulk_threshold: the streaming path)")
	flag.IntVar(&o.partitions, "partitions", 4, "goroutines applying batches at once, as partitions do")
	flag.IntVar(&o.maxConcurrency, "max-concurrency", 4, "the connector's with.max_concurrency")
	flag.Float64Var(&o.pace, "pace", 0.95, "with.requests_per_second as a share of budget/window (0: no pacing)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench salesforce:", err)
		os.Exit(1)
	}
}

// run drives the connector against the stub and prints the RESULT line.
func run(o options) error {
	stub := sftest.New(sftest.Config{ClientID: clientID, ClientSecret: clientSecret, Budget: o.budget,
		Window: o.window, Latency: o.latency})
	defer stub.Close()
	allowedReqs := float64(o.budget) / o.window.Seconds()
	with := map[string]any{"login_url": stub.URL, "client_id": clientID, "client_secret": clientSecret,
		"sobject": sobject, "external_id_field": extField, "max_concurrency": o.maxConcurrency,
		"limit_backoff": o.window.String(), "bulk_threshold": max(o.batch, salesforce.DefaultBulkThreshold)}
	if o.pace > 0 {
		with["requests_per_second"] = o.pace * allowedReqs
	}
	conn, err := salesforce.New(context.Background(), sink.Params{Sink: "bench", With: with, Key: []string{extField}})
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(os.Stderr, "budget %d requests per %s (%.0f records/s), %d partitions × %d-record batches, pacing %.2f, for %s\n",
		o.budget, o.window, allowedReqs*salesforce.MaxCollection, o.partitions, o.batch, o.pace, o.duration)
	perPart, elapsed, err := drive(conn, o)
	if err != nil {
		return err
	}
	return report(stub, o, perPart, elapsed, allowedReqs)
}

// drive applies batches from o.partitions goroutines until o.duration has passed and returns
// the records each applied and the time taken (until the last batch finished).
func drive(conn sink.Connector, o options) ([]int, time.Duration, error) {
	applied := make([]int, o.partitions)
	start := time.Now()
	deadline := start.Add(o.duration)
	errs := make([]error, o.partitions)
	var wg sync.WaitGroup
	for p := range o.partitions {
		wg.Go(func() {
			for seq := 0; time.Now().Before(deadline); seq++ {
				if errs[p] = applyBatch(conn, batch(p, seq, o.batch)); errs[p] != nil {
					return
				}
				applied[p] += o.batch
			}
		})
	}
	wg.Wait()
	return applied, time.Since(start), errors.Join(errs...)
}

// batch builds partition p's seq-th batch of n upserts.
func batch(p, seq, n int) *sink.Batch {
	b := &sink.Batch{Sink: "bench", Topic: "wh.public.leads", Partition: int32(p), Records: make([]sink.Record, n)}
	for i := range n {
		k := (seq*n + i) % keysPerPart
		id := fmt.Sprintf("P%d-%06d", p, k)
		b.Records[i] = sink.Record{Op: sink.OpUpsert, Key: map[string]any{extField: id},
			Fields:     map[string]any{extField: id, "LastName": "Lead " + id, "Score__c": int64(seq)},
			FieldOrder: []string{extField, "LastName", "Score__c"}, Topic: b.Topic, Partition: b.Partition,
			Offset: int64(seq*n + i)}
	}
	return b
}

// applyBatch applies b, retrying retryable errors the way the sink runtime does.
func applyBatch(conn sink.Connector, b *sink.Batch) error {
	for {
		err := conn.Apply(context.Background(), b)
		if err == nil {
			return nil
		}
		if !sink.IsRetryable(err) {
			return err
		}
		wait := sink.RetryDelay(err)
		if wait == 0 {
			wait = 100 * time.Millisecond
		}
		fmt.Fprintf(os.Stderr, "retrying in %s: %v\n", wait, err)
		time.Sleep(wait)
	}
}

// report checks the stub's store and prints the RESULT line.
func report(stub *sftest.Server, o options, perPart []int, elapsed time.Duration, allowedReqs float64) error {
	st := stub.Stats()
	applied, want := 0, 0
	for _, n := range perPart {
		applied += n
		want += min(n, keysPerPart)
	}
	if n := stub.Count(sobject); n != want {
		return fmt.Errorf("the stub holds %d records, want %d: records were lost", n, want)
	}
	rejectedPct := 0.0
	if st.Requests > 0 {
		rejectedPct = 100 * float64(st.LimitRejections) / float64(st.Requests)
	}
	recordsPerSec := float64(applied) / elapsed.Seconds()
	allowed := allowedReqs * salesforce.MaxCollection
	fmt.Fprintf(os.Stderr, "%d records in %.2fs, %d requests, %d rejected, %d logins, at most %d in flight\n",
		applied, elapsed.Seconds(), st.Requests, st.LimitRejections, st.TokenRequests, st.MaxConcurrent)
	fmt.Printf("RESULT salesforce records_per_s=%.0f allowed_per_s=%.0f rejected_429_pct=%.2f ratio_vs_allowed=%.3f "+
		"requests=%d rejected=%d seconds=%.2f budget=%d window=%s batch=%d partitions=%d pace=%.2f\n",
		recordsPerSec, allowed, rejectedPct, recordsPerSec/allowed, st.Requests, st.LimitRejections, elapsed.Seconds(),
		o.budget, o.window, o.batch, o.partitions, o.pace)
	return nil
}
