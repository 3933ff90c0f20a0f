package salesforce

import (
	"context"
	"strconv"
	"testing"

	"github.com/backflow-dev/backflow/connectors/salesforce/sftest"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
)

const (
	kitSObject = "Item__c"
	// kitExtID is the external id field holding the kit's key: Salesforce field names are case
	// insensitive, so the kit's "id" would be the record's own Id.
	kitExtID   = "Kit_Id__c"
	poisonName = "refused by a validation rule"
)

// TestConformance runs the connector kit against the stub, a fresh one per case, with the kit's
// key as the external id field, on both paths: sObject Collections and Bulk API 2.0.
func TestConformance(t *testing.T) {
	for path, threshold := range map[string]int{"collections": 1000, "bulk": 1} {
		t.Run(path, func(t *testing.T) { conformance(t, threshold) })
	}
}

func conformance(t *testing.T, bulkThreshold int) {
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			s := stub(t, sftest.Config{Validate: func(_ string, rec map[string]any) *sftest.Error {
				if rec[sinktest.Name] == poisonName {
					return &sftest.Error{StatusCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION", Message: "name refused",
						Fields: []string{sinktest.Name}}
				}
				return nil
			}})
			p.Key = []string{kitExtID}
			p.With = settings(s, "sobject", kitSObject, "external_id_field", kitExtID, "bulk_threshold", bulkThreshold)
			c, err := New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any { return kitRows(t, s) }}
		},
		Translate: renameKey,
		// A validation rule rejects the record alone (its result in the collection answer).
		Poison: func(r *sink.Record) { r.Fields[sinktest.Name] = poisonName },
		Skip: map[string]string{
			sinktest.CaseTruncateInOrder: "sObjects cannot be truncated: the connector refuses truncates per record " +
				"(dead-lettered; TestDeletesAndTruncates)",
		},
	})
}

// kitRows reads the stub's records as the kit's rows. The stub finds records by external id
// only, so the ids the kit uses (below 1000) are looked up and the count checked against the
// stub's, which catches records under other ids.
func kitRows(t testing.TB, s *sftest.Server) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for id := range 1000 {
		rec, ok := s.Record(kitSObject, kitExtID, strconv.Itoa(id))
		if ok {
			out[strconv.Itoa(id)] = rec
		}
	}
	if n := s.Count(kitSObject); n != len(out) {
		t.Fatalf("the stub holds %d %s records, %d of them under the kit's ids: %v", n, kitSObject, len(out), out)
	}
	return out
}

// renameKey moves the kit's key field to the external id field.
func renameKey(r sink.Record) sink.Record {
	rename := func(m map[string]any) map[string]any {
		if m == nil {
			return nil
		}
		out := make(map[string]any, len(m))
		for k, v := range m {
			if k == sinktest.KeyField {
				k = kitExtID
			}
			out[k] = v
		}
		return out
	}
	r.Key, r.Fields = rename(r.Key), rename(r.Fields)
	r.KeyOrder = renameAll(r.KeyOrder)
	r.FieldOrder = renameAll(r.FieldOrder)
	return r
}

func renameAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		if n == sinktest.KeyField {
			n = kitExtID
		}
		out[i] = n
	}
	return out
}
