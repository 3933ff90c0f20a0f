package hubspot

import (
	"context"
	"strconv"
	"testing"

	"github.com/backflow-dev/backflow/connectors/hubspot/hubspottest"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

// kitObjectType is a custom object type whose unique property is the kit's key field.
const kitObjectType = "p_items"

// TestConformance runs the connector kit against the stub, a fresh one per case.
func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			s := stub(t, hubspottest.Options{})
			p.With = map[string]any{"token": hubspottest.DefaultToken, "object_type": kitObjectType,
				"id_property": sinktest.KeyField, "base_url": s.URL}
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any { return kitRows(t, s) }}
		},
		// HubSpot refuses an invalid email value per input (a multi-status answer).
		Poison: func(r *sink.Record) {
			r.Fields["email"] = "not an email"
			r.FieldOrder = append(r.FieldOrder, "email")
		},
		// HubSpot clears a property set to the empty text: there is no empty value distinct from none.
		EmptyIsNull: true,
		Skip: map[string]string{
			sinktest.CaseTruncateInOrder: "CRM objects cannot be truncated: the connector refuses truncates per record " +
				"(dead-lettered; TestTruncateRefusedPerRecord)",
		},
	})
}

// kitRows reads the stub's objects as the kit's rows. The stub lists objects by unique property
// only, so the ids the kit uses (below 1000) are looked up and the count checked against the
// stub's, which catches objects under other ids.
func kitRows(t testing.TB, s *hubspottest.Server) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for id := range 1000 {
		o, ok := s.Object(kitObjectType, sinktest.KeyField, strconv.Itoa(id))
		if !ok {
			continue
		}
		row := map[string]any{}
		for k, v := range o.Properties {
			row[k] = v
		}
		out[strconv.Itoa(id)] = row
	}
	if n := s.ObjectCount(kitObjectType); n != len(out) {
		t.Fatalf("the stub holds %d %s objects, %d of them under the kit's ids: %v", n, kitObjectType, len(out), out)
	}
	return out
}
