package testenv

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Transaction is one Kafka transaction for WriteTransactions: its records, and how it ends.
type Transaction struct {
	Records []*kgo.Record
	End     string // "commit", "abort", or "" to leave it open
}

// WriteTransactions writes txns in order through one transactional producer (transactional ID
// "eos-source"), as Debezium with exactly-once delivery, Kafka Streams or Flink write a topic.
// It returns the producer, whose transaction, when the last is left open, the caller ends; the
// caller closes it.
func WriteTransactions(ctx context.Context, brokers []string, txns ...Transaction) (*kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("eos-source"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, fmt.Errorf("transactional producer: %w", err)
	}
	for i, txn := range txns {
		if err := write(ctx, cl, txn); err != nil {
			cl.Close()
			return nil, fmt.Errorf("transaction %d: %w", i, err)
		}
	}
	return cl, nil
}

func write(ctx context.Context, cl *kgo.Client, txn Transaction) error {
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, txn.Records...).FirstErr(); err != nil {
		return err
	}
	if txn.End == "" {
		return nil
	}
	return cl.EndTransaction(ctx, kgo.TransactionEndTry(txn.End == "commit"))
}

// EndsInTurn gives each record a transaction of its own, ended by commit and abort in turn,
// starting with commit, except the last, left open: the mix a reader of a transactional topic
// must sort out.
func EndsInTurn(recs ...*kgo.Record) []Transaction {
	out := make([]Transaction, len(recs))
	for i, r := range recs {
		out[i] = Transaction{Records: []*kgo.Record{r}, End: "commit"}
		if i%2 == 1 {
			out[i].End = "abort"
		}
	}
	if len(out) > 0 {
		out[len(out)-1].End = ""
	}
	return out
}
