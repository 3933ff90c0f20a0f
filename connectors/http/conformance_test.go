package httpsink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// poisonName is a name the kit's receiver refuses, as a receiver refuses a record it cannot take.
const poisonName = "refused by the receiver"

// TestConformance runs the connector kit against a receiver that keeps a table the way a webhook
// consumer would: upserts merged into the key's row, deletes and truncates applied, and a
// per-record result for each record.
func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			recv := &tableReceiver{rows: map[string]map[string]any{}}
			srv := httptest.NewServer(recv)
			t.Cleanup(srv.Close)
			p.With = map[string]any{"url": srv.URL}
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(testing.TB) map[string]map[string]any { return recv.snapshot() }}
		},
		Poison: func(r *sink.Record) { r.Fields[sinktest.Name] = poisonName },
	})
}

// tableReceiver is a webhook receiver that applies the records it gets to a table.
type tableReceiver struct {
	mu   sync.Mutex
	rows map[string]map[string]any
}

func (h *tableReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(r.Body)
	dec.UseNumber() // int64 and exact decimals arrive as they were sent
	var p Payload
	if err := dec.Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type result struct {
		Index int    `json:"index"`
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
	}
	results := make([]result, len(p.Records))
	h.mu.Lock()
	for i, rec := range p.Records {
		results[i] = result{Index: i, OK: true}
		if rec.Fields[sinktest.Name] == poisonName {
			results[i] = result{Index: i, Error: "name refused"}
			continue
		}
		h.apply(rec)
	}
	h.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
}

func (h *tableReceiver) apply(rec PayloadRecord) {
	id := fmt.Sprint(rec.Key[sinktest.KeyField])
	switch rec.Op {
	case "truncate":
		clear(h.rows)
	case "delete":
		delete(h.rows, id)
	case "upsert":
		if h.rows[id] == nil {
			h.rows[id] = map[string]any{}
		}
		for f, v := range rec.Fields {
			h.rows[id][f] = v
		}
	}
}

func (h *tableReceiver) snapshot() map[string]map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]map[string]any, len(h.rows))
	for id, row := range h.rows {
		out[id] = make(map[string]any, len(row))
		for f, v := range row {
			out[id][f] = v
		}
	}
	return out
}
