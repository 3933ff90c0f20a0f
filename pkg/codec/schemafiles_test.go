package codec

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

//go:generate go test -run TestSchemaFiles -update .

var update = flag.Bool("update", false, "rewrite the generated files in schemas/")

// exampleTable is the table the documented example schemas are derived from.
func exampleTable() *change.Table {
	return &change.Table{Schema: "public", Name: "inventory", Columns: []change.Column{
		{Name: "sku", Kind: change.KindString, PGType: "text", TypeOID: 25, Key: true},
		{Name: "warehouse", Kind: change.KindInt32, PGType: "int4", TypeOID: 23, Key: true},
		{Name: "qty", Kind: change.KindInt32, PGType: "int4", TypeOID: 23},
		{Name: "reserved", Kind: change.KindInt16, PGType: "int2", TypeOID: 21},
		{Name: "batch_id", Kind: change.KindUUID, PGType: "uuid", TypeOID: 2950},
		{Name: "price", Kind: change.KindNumeric, PGType: "numeric", TypeOID: 1700},
		{Name: "Unit Cost (€)", Kind: change.KindNumeric, PGType: "numeric", TypeOID: 1700},
		{Name: "weight_kg", Kind: change.KindFloat64, PGType: "float8", TypeOID: 701},
		{Name: "score", Kind: change.KindFloat32, PGType: "float4", TypeOID: 700},
		{Name: "active", Kind: change.KindBool, PGType: "bool", TypeOID: 16},
		{Name: "status", Kind: change.KindEnum, PGType: "stock_status", TypeOID: 16390},
		{Name: "description", Kind: change.KindString, PGType: "text", TypeOID: 25},
		{Name: "photo", Kind: change.KindBytes, PGType: "bytea", TypeOID: 17},
		{Name: "attrs", Kind: change.KindJSON, PGType: "jsonb", TypeOID: 3802},
		{Name: "restocked_on", Kind: change.KindDate, PGType: "date", TypeOID: 1082},
		{Name: "cutoff", Kind: change.KindTime, PGType: "time", TypeOID: 1083},
		{Name: "received_at", Kind: change.KindTimestamp, PGType: "timestamp", TypeOID: 1114},
		{Name: "updated_at", Kind: change.KindTimestampTZ, PGType: "timestamptz", TypeOID: 1184},
		{Name: "lead_time", Kind: change.KindInterval, PGType: "interval", TypeOID: 1186},
		{Name: "tags", Kind: change.KindArray, Elem: change.KindString, PGType: "_text", TypeOID: 1009},
	}}
}

// exampleEvent is an update of exampleTable whose description was TOASTed and unchanged.
func exampleEvent() *change.Event {
	after := change.Row{
		"sku": "A-100", "warehouse": int32(3), "qty": int32(12), "reserved": int32(2),
		"batch_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "price": "19.90", "Unit Cost (€)": "7.25",
		"weight_kg": 0.75, "score": float32(4.5), "active": true, "status": "in_stock", "description": nil,
		"photo": []byte{0x89, 'P', 'N', 'G'}, "attrs": `{"color": "red"}`, "restocked_on": int32(19844),
		"cutoff": int64(61200000000), "received_at": int64(1714557600000000),
		"updated_at": "2024-05-01T10:00:00.000001Z", "lead_time": "P2DT4H", "tags": []any{"fragile", nil},
	}
	return &change.Event{
		Op: change.OpUpdate, Table: exampleTable(), After: after, UnchangedToast: []string{"description"},
		Source: change.Source{Connector: "postgresql", Name: "wh", DB: "warehouse", Schema: "public",
			Table: "inventory", TxID: 7781, LSN: 24023128, TsMs: 1714557600123, Snapshot: "false"},
		TsMs: 1714557600130,
	}
}

// TestSchemaFiles keeps schemas/*.avsc and the JSON example true to the code. Regenerate them
// with `go generate ./pkg/codec` (or `go test ./pkg/codec -run TestSchemaFiles -update`).
func TestSchemaFiles(t *testing.T) {
	ctx := context.Background()
	defer func(v string) { sourceVersion = v }(sourceVersion)
	sourceVersion = "backflow" // the examples must not depend on how the test binary was stamped
	enc, err := NewEncoder(TopicPrefix("wh"))
	if err != nil {
		t.Fatal(err)
	}
	key, value, err := enc.Schemas(exampleTable())
	if err != nil {
		t.Fatal(err)
	}
	jenc, err := NewEncoder(TopicPrefix("wh"), Format(FormatJSON))
	if err != nil {
		t.Fatal(err)
	}
	jkey, jvalue, err := jenc.Encode(ctx, "wh.public.inventory", exampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"envelope.example.avsc": value,
		"key.example.avsc":      key,
		"source.avsc":           SourceSchema(),
		"envelope.example.json": jvalue,
		"key.example.json":      jkey,
	}
	dir := filepath.Join("..", "..", "schemas")
	for name, compact := range files {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, compact, "", "  "); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pretty.WriteByte('\n')
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go generate ./pkg/codec)", err)
		}
		if !bytes.Equal(have, pretty.Bytes()) {
			t.Errorf("%s is stale: run go generate ./pkg/codec", path)
		}
		if filepath.Ext(name) != ".avsc" {
			continue
		}
		// The file is a schema with the same fingerprint as the one the encoder uses.
		s, err := parseSchema(have)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		c, _ := parseSchema(compact)
		fp1, _ := Fingerprint(s)
		fp2, _ := Fingerprint(c)
		if fp1 != fp2 {
			t.Errorf("%s: fingerprint %016x, encoder's %016x", path, fp1, fp2)
		}
	}
}
