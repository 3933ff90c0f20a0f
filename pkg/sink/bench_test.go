package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/mapping"
)

// BenchmarkToRecords measures the sink's own work per record (decode, map, key, coalesce),
// without Kafka or a target.
func BenchmarkToRecords(b *testing.B) {
	store := codec.NewSchemaStore()
	enc, _ := codec.NewEncoder(codec.TopicPrefix("wh"), codec.SchemaPublisher(func(_ context.Context, _ uint64, s []byte) error {
		_, err := store.Add(s)
		return err
	}))
	t := &change.Table{Schema: "public", Name: "inventory", Columns: []change.Column{
		{Name: "sku", Kind: change.KindString, Key: true}, {Name: "warehouse", Kind: change.KindString, Key: true},
		{Name: "qty", Kind: change.KindInt32}, {Name: "price", Kind: change.KindNumeric}, {Name: "updated_at", Kind: change.KindTimestampTZ},
	}}
	var recs []*kgo.Record
	for i := range 5000 {
		ev := &change.Event{Op: change.OpCreate, Table: t, After: change.Row{"sku": fmt.Sprintf("SKU-%06d", i), "warehouse": "ams",
			"qty": int32(i), "price": "12.50", "updated_at": "2024-05-01T10:00:00.000000Z"}, Source: change.Source{LSN: int64(i), TsMs: 1}}
		k, v, err := enc.Encode(context.Background(), "wh.public.inventory", ev)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.inventory", Key: k, Value: v, Offset: int64(i)})
	}
	dec, _ := codec.NewDecoder(codec.Schemas(store))
	cfg := config.Sink{Name: "s", Key: []string{"sku", "warehouse"}, OnDelete: "delete",
		Map: map[string]string{"sku": "after.sku", "warehouse": "after.warehouse", "qty": "after.qty", "price": "after.price", "updated_at": "after.updated_at"}}
	m, err := mapping.Compile(mapping.Spec{Sink: "s", Fields: cfg.Map, Key: cfg.Key})
	if err != nil {
		b.Fatal(err)
	}
	s := &Sink{cfg: cfg, dec: dec, mapping: m, log: zap.NewNop()}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		out := make([]Record, 0, len(recs))
		for _, kr := range recs {
			r, keep, reason, err := s.toRecord(context.Background(), kr)
			if err != nil || reason != "" || !keep {
				b.Fatalf("%v %s", err, reason)
			}
			out = append(out, r)
		}
		_ = coalesce(out)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
