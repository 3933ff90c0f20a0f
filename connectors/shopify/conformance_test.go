package shopify

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/backflow-dev/backflow/connectors/shopify/shopifytest"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// kitSKUs is how many SKUs the stub stocks for the kit: its ids are below it.
const kitSKUs = 100

// TestConformance runs the connector kit against the stub, a fresh shop per case. Shopify's
// records have a fixed shape: the kit's row id is SKU-<id> at warehouse WH-A, its qty the
// available quantity, and a row is there while its quantity is not 0 (a delete sets 0).
func TestConformance(t *testing.T) {
	var lsn atomic.Int64 // each translated record is a change of its own (the idempotency key)
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			e := newEnv(t, shopifytest.Config{}, kitSKUs, "WH-A")
			p.Key = []string{"sku", "warehouse"}
			p.With = e.params().With
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any { return kitRows(t, e) }}
		},
		Fields: []string{sinktest.Qty},
		Translate: func(r sink.Record) sink.Record {
			return inventoryRecord(r, lsn.Add(1))
		},
		// Quantities are whole numbers: a fraction is refused for that record alone.
		Poison: func(r *sink.Record) { r.Fields[sinktest.Qty] = 2.5 },
		Skip: map[string]string{
			sinktest.CaseTruncateInOrder: "inventory cannot be truncated: refused per record (TestDeleteSetsZeroTruncateRefused)",
			sinktest.CaseSoftDelete:      "an inventory level cannot be marked deleted: on_delete soft_delete is refused at start",
			sinktest.CaseNulls:           "the target holds only a quantity, and a null quantity is refused as not a number",
			sinktest.CaseUnicode:         "the target holds no text of the record's (SKUs and warehouses are looked up, not written)",
			sinktest.CaseBigNumbers:      "Shopify quantities are 32-bit: larger ones are refused per record (TestBadRecordsFailAlone)",
		},
	})
}

// inventoryRecord turns a kit record into an inventory level change.
func inventoryRecord(r sink.Record, lsn int64) sink.Record {
	op := change.OpUpdate
	if r.Op == sink.OpDelete {
		op = change.OpDelete
	}
	r.Event = &change.Event{Op: op, Source: change.Source{LSN: lsn, TxID: lsn}}
	if r.Op == sink.OpTruncate {
		return r
	}
	sku := fmt.Sprintf("SKU-%03d", r.Key[sinktest.KeyField])
	r.Key = map[string]any{"sku": sku, "warehouse": "WH-A"}
	r.KeyOrder = []string{"sku", "warehouse"}
	if r.Op == sink.OpUpsert {
		fields := map[string]any{"sku": sku, "warehouse": "WH-A"}
		order := []string{"sku", "warehouse"}
		if q, ok := r.Fields[sinktest.Qty]; ok {
			fields["available"] = q
			order = append(order, "available")
		}
		r.Fields, r.FieldOrder = fields, order
	}
	return r
}

// kitRows reads the stub's levels at WH-A as the kit's rows: those whose quantity is not 0.
func kitRows(t testing.TB, e *env) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for id := range kitSKUs {
		q, ok := e.srv.QuantityOf(skuName(id), "WH-A", "available")
		if !ok {
			t.Fatalf("%s is not stocked at WH-A", skuName(id))
		}
		if q != 0 {
			out[strconv.Itoa(id)] = map[string]any{sinktest.Qty: q}
		}
	}
	return out
}
