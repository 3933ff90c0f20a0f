package capture

import (
	"context"
	"testing"
)

// A transaction's batches are sent at once only when everything emitted before it has been
// acknowledged: ackedBelow answers that, whatever order the acknowledgements come in.
func TestAckedBelowWaitsForEveryEarlierRecord(t *testing.T) {
	tr := newTracker(8)
	ctx := context.Background()
	var seqs []uint64
	for range 3 {
		seq, err := tr.reserve(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	txn := tr.nextSeq()
	if !tr.ackedBelow(seqs[0]) {
		t.Fatal("nothing precedes the first record")
	}
	tr.ack(seqs[1], nil)
	tr.ack(seqs[2], nil)
	if tr.ackedBelow(txn) {
		t.Fatal("the first record is not acknowledged yet")
	}
	tr.ack(seqs[0], nil)
	if !tr.ackedBelow(txn) {
		t.Fatal("every record before the transaction is acknowledged")
	}
}
