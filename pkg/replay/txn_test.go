package replay_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/replay"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestReplayOfATransactionalTopic: a replay of a topic written in Kafka transactions applies the
// committed records only, and ends although the topic's last offsets are transaction markers
// (which no reader is handed) and a transaction is still open.
func TestReplayOfATransactionalTopic(t *testing.T) {
	h := newRDHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Rows 1 to 4: committed, aborted, committed, open.
	txn, err := testenv.WriteTransactions(ctx, h.kf.Brokers(), testenv.EndsInTurn(h.record(1, 1), h.record(2, 2), h.record(3, 3), h.record(4, 4))...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()

	sc := config.Sink{Name: "s1", Topics: []string{srcTopic}, Connector: "postgres", Key: []string{"id"},
		With:     map[string]any{"url": h.url, "table": "public.t_copy"},
		Map:      map[string]string{"id": "after.id", "v": "after.v", "note": "after.note"},
		OnDelete: "delete", OnTruncate: "truncate", Concurrency: 1,
		Batch: config.Batch{MaxRecords: 100, MaxWait: 20 * time.Millisecond}}
	if err := h.replayEarliest(ctx, sc); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got, want := h.rows(), "1=1 3=3"; got != want {
		t.Errorf("target rows %q, want %q: the committed transactions' only", got, want)
	}
}

// TestRedriveFromATransactionalTopic: a re-drive whose dead letters came from a topic written in
// Kafka transactions reads that topic for newer records of their keys up to its end, which is a
// marker, and stops there; a record of an aborted transaction is no newer record.
func TestRedriveFromATransactionalTopic(t *testing.T) {
	h := newRDHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := h.record(1, 1)
	// Row 1 at v 1, then an aborted update to v 2.
	txn, err := testenv.WriteTransactions(ctx, h.kf.Brokers(), testenv.Transaction{Records: []*kgo.Record{first}, End: "commit"},
		testenv.Transaction{Records: []*kgo.Record{h.record(1, 2)}, End: "abort"})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	h.deadLetter(first, 0, "apply: lock timeout", time.Now())
	done := make(chan replay.RedriveSummary, 1)
	go func() {
		sum, _ := h.redrive(replay.RedriveOptions{})
		done <- sum
	}()
	select {
	case sum := <-done:
		if sum.Redriven != 1 || h.rows() != "1=1" {
			t.Errorf("summary %s, rows %q: want the dead letter re-driven, row 1 at v 1", sum, h.rows())
		}
	case <-ctx.Done():
		t.Fatal("the re-drive did not stop at the end of the source topic")
	}
}
