package codec

import (
	"context"
	"encoding/binary"
	"math/big"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// debeziumUpdate is an update event as Debezium's PostgreSQL connector writes it with the
// JsonConverter and schemas.enable=true (defaults: decimal.handling.mode=precise,
// time.precision.mode=adaptive, interval.handling.mode=numeric, REPLICA IDENTITY FULL), written
// by hand after the connector documentation.
const debeziumUpdate = `{
  "schema": {
    "type": "struct",
    "fields": [
      {
        "type": "struct",
        "fields": [
          {"type": "int32", "optional": false, "default": 0, "field": "id"},
          {"type": "string", "optional": false, "name": "io.debezium.data.Uuid", "version": 1, "field": "customer_id"},
          {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
           "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
          {"type": "int16", "optional": true, "field": "qty"},
          {"type": "double", "optional": true, "field": "weight"},
          {"type": "boolean", "optional": true, "field": "gift"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
           "parameters": {"allowed": "new,shipped,lost"}, "field": "status"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "attrs"},
          {"type": "int32", "optional": true, "name": "io.debezium.time.Date", "version": 1, "field": "ship_date"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTime", "version": 1, "field": "cutoff"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "created_at"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.Timestamp", "version": 1, "field": "legacy_ts"},
          {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "updated_at"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroDuration", "version": 1, "field": "lead_time"},
          {"type": "bytes", "optional": true, "field": "label_png"},
          {"type": "array", "items": {"type": "string", "optional": true}, "optional": true, "field": "tags"},
          {"type": "string", "optional": true, "field": "note"}
        ],
        "optional": true,
        "name": "dbserver1.inventory.orders.Value",
        "field": "before"
      },
      {
        "type": "struct",
        "fields": [
          {"type": "int32", "optional": false, "default": 0, "field": "id"},
          {"type": "string", "optional": false, "name": "io.debezium.data.Uuid", "version": 1, "field": "customer_id"},
          {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
           "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
          {"type": "int16", "optional": true, "field": "qty"},
          {"type": "double", "optional": true, "field": "weight"},
          {"type": "boolean", "optional": true, "field": "gift"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
           "parameters": {"allowed": "new,shipped,lost"}, "field": "status"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "attrs"},
          {"type": "int32", "optional": true, "name": "io.debezium.time.Date", "version": 1, "field": "ship_date"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTime", "version": 1, "field": "cutoff"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "created_at"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.Timestamp", "version": 1, "field": "legacy_ts"},
          {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "updated_at"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroDuration", "version": 1, "field": "lead_time"},
          {"type": "bytes", "optional": true, "field": "label_png"},
          {"type": "array", "items": {"type": "string", "optional": true}, "optional": true, "field": "tags"},
          {"type": "string", "optional": true, "field": "note"}
        ],
        "optional": true,
        "name": "dbserver1.inventory.orders.Value",
        "field": "after"
      },
      {
        "type": "struct",
        "fields": [
          {"type": "string", "optional": false, "field": "version"},
          {"type": "string", "optional": false, "field": "connector"},
          {"type": "string", "optional": false, "field": "name"},
          {"type": "int64", "optional": false, "field": "ts_ms"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
           "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
           "default": "false", "field": "snapshot"},
          {"type": "string", "optional": false, "field": "db"},
          {"type": "string", "optional": true, "field": "sequence"},
          {"type": "int64", "optional": true, "field": "ts_us"},
          {"type": "int64", "optional": true, "field": "ts_ns"},
          {"type": "string", "optional": false, "field": "schema"},
          {"type": "string", "optional": false, "field": "table"},
          {"type": "int64", "optional": true, "field": "txId"},
          {"type": "int64", "optional": true, "field": "lsn"},
          {"type": "int64", "optional": true, "field": "xmin"}
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source"
      },
      {
        "type": "struct",
        "fields": [
          {"type": "string", "optional": false, "field": "id"},
          {"type": "int64", "optional": false, "field": "total_order"},
          {"type": "int64", "optional": false, "field": "data_collection_order"}
        ],
        "optional": true,
        "name": "event.block",
        "version": 1,
        "field": "transaction"
      },
      {"type": "string", "optional": false, "field": "op"},
      {"type": "int64", "optional": true, "field": "ts_ms"},
      {"type": "int64", "optional": true, "field": "ts_us"},
      {"type": "int64", "optional": true, "field": "ts_ns"}
    ],
    "optional": false,
    "name": "dbserver1.inventory.orders.Envelope",
    "version": 2
  },
  "payload": {
    "before": {
      "id": 1001, "customer_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "amount": "+w==", "qty": 1,
      "weight": 0.5, "gift": false, "status": "new", "attrs": null, "ship_date": null, "cutoff": null,
      "created_at": 1714557600000001, "legacy_ts": null, "updated_at": null, "lead_time": null,
      "label_png": null, "tags": null, "note": null
    },
    "after": {
      "id": 1001, "customer_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "amount": "AeI6", "qty": 2,
      "weight": 1.25, "gift": true, "status": "shipped", "attrs": "{\"color\": \"red\"}", "ship_date": 19845,
      "cutoff": 61200000000, "created_at": 1714557600000001, "legacy_ts": 1714557600123,
      "updated_at": "2024-05-02T08:30:00.5Z", "lead_time": 90061500000, "label_png": "iVBORw==",
      "tags": ["fragile", null], "note": null
    },
    "source": {
      "version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": 1714638600000,
      "snapshot": "false", "db": "shop", "sequence": "[\"24023119\",\"24023128\"]", "ts_us": 1714638600000000,
      "ts_ns": 1714638600000000000, "schema": "inventory", "table": "orders", "txId": 555, "lsn": 24023128,
      "xmin": null
    },
    "transaction": null,
    "op": "u",
    "ts_ms": 1714638600456,
    "ts_us": 1714638600456123,
    "ts_ns": 1714638600456123000
  }
}`

const debeziumKey = `{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"default":0,"field":"id"}],` +
	`"optional":false,"name":"dbserver1.inventory.orders.Key"},"payload":{"id":1001}}`

func TestDecodeDebeziumJSON(t *testing.T) {
	ctx := context.Background()
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string, k change.Kind) change.Column { return change.Column{Name: name, Kind: k} }
	wantTable := &change.Table{Schema: "inventory", Name: "orders", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true},
		col("customer_id", change.KindUUID),
		col("amount", change.KindNumeric),
		col("qty", change.KindInt16),
		col("weight", change.KindFloat64),
		col("gift", change.KindBool),
		col("status", change.KindEnum),
		col("attrs", change.KindJSON),
		col("ship_date", change.KindDate),
		col("cutoff", change.KindTime),
		col("created_at", change.KindTimestamp),
		col("legacy_ts", change.KindTimestamp),
		col("updated_at", change.KindTimestampTZ),
		col("lead_time", change.KindInterval),
		col("label_png", change.KindBytes),
		{Name: "tags", Kind: change.KindArray, Elem: change.KindString},
		col("note", change.KindString),
	}}
	want := &change.Event{
		Op:    change.OpUpdate,
		Table: wantTable,
		Before: change.Row{
			"id": int32(1001), "customer_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "amount": "-0.05",
			"qty": int32(1), "weight": 0.5, "gift": false, "status": "new", "attrs": nil, "ship_date": nil,
			"cutoff": nil, "created_at": int64(1714557600000001), "legacy_ts": nil, "updated_at": nil,
			"lead_time": nil, "label_png": nil, "tags": nil, "note": nil,
		},
		After: change.Row{
			"id": int32(1001), "customer_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "amount": "1234.50",
			"qty": int32(2), "weight": 1.25, "gift": true, "status": "shipped", "attrs": `{"color": "red"}`,
			"ship_date": int32(19845), "cutoff": int64(61200000000), "created_at": int64(1714557600000001),
			"legacy_ts": int64(1714557600123000), "updated_at": "2024-05-02T08:30:00.5Z",
			"lead_time": "PT90061.5S", "label_png": []byte{0x89, 'P', 'N', 'G'}, "tags": []any{"fragile", nil},
			"note": nil,
		},
		Source: change.Source{Connector: "postgresql", Name: "dbserver1", DB: "shop", Schema: "inventory",
			Table: "orders", TxID: 555, LSN: 24023128, TsMs: 1714638600000, Snapshot: "false"},
		TsMs: 1714638600456,
	}
	got, err := dec.Decode(ctx, "dbserver1.inventory.orders", []byte(debeziumKey), []byte(debeziumUpdate))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s\nwant %s", dump(got), dump(want))
	}

	// The key alone, e.g. for the tombstone after a delete.
	kt, krow, err := dec.DecodeKey(ctx, "dbserver1.inventory.orders", []byte(debeziumKey))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(krow, change.Row{"id": int32(1001)}) || kt.Name != "orders" || kt.Schema != "inventory" ||
		!reflect.DeepEqual(kt.Columns, []change.Column{{Name: "id", Kind: change.KindInt32, Key: true}}) {
		t.Fatalf("key: %+v %v", kt, krow)
	}
}

// TestDecodeDebeziumJSONSchemaless reads Debezium JSON written with schemas.enable=false: kinds
// are inferred from the values.
func TestDecodeDebeziumJSONSchemaless(t *testing.T) {
	ctx := context.Background()
	dec, _ := NewDecoder()
	value := `{"before":null,"after":{"id":1004,"first_name":"Anne","score":9.5,"vip":true,"tags":["a",null],"meta":{"k": 1},"email":null},` +
		`"source":{"version":"2.7.3.Final","connector":"postgresql","name":"dbserver1","ts_ms":1559033904863,"snapshot":true,` +
		`"db":"postgres","sequence":"[null,\"24023128\"]","schema":"inventory","table":"customers","txId":555,"lsn":24023128,"xmin":null},` +
		`"op":"r","ts_ms":1559033904863,"transaction":null}`
	got, err := dec.Decode(ctx, "dbserver1.inventory.customers", []byte(`{"id":1004}`), []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	want := &change.Event{
		Op: change.OpRead,
		Table: &change.Table{Schema: "inventory", Name: "customers", Columns: []change.Column{
			{Name: "id", Kind: change.KindInt64, Key: true},
			{Name: "first_name", Kind: change.KindString},
			{Name: "score", Kind: change.KindFloat64},
			{Name: "vip", Kind: change.KindBool},
			{Name: "tags", Kind: change.KindArray, Elem: change.KindString},
			{Name: "meta", Kind: change.KindJSON},
			{Name: "email", Kind: change.KindString},
		}},
		After: change.Row{"id": int64(1004), "first_name": "Anne", "score": 9.5, "vip": true,
			"tags": []any{"a", nil}, "meta": `{"k":1}`, "email": nil},
		Source: change.Source{Connector: "postgresql", Name: "dbserver1", DB: "postgres", Schema: "inventory",
			Table: "customers", TxID: 555, LSN: 24023128, TsMs: 1559033904863, Snapshot: "true"},
		TsMs: 1559033904863,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s\nwant %s", dump(got), dump(want))
	}
	// Debezium's JsonConverter writes a tombstone as a null record value.
	if ev, err := dec.Decode(ctx, "t", []byte(`{"id":1004}`), nil); ev != nil || err != nil {
		t.Fatalf("tombstone: %v %v", ev, err)
	}
	// A wrapped null payload is a tombstone too.
	if ev, err := dec.Decode(ctx, "t", nil, []byte(`{"schema":null,"payload":null}`)); ev != nil || err != nil {
		t.Fatalf("wrapped null payload: %v %v", ev, err)
	}
}

func TestMicrosISO(t *testing.T) {
	for us, want := range map[int64]string{
		0: "PT0S", 1: "PT0.000001S", 90061500000: "PT90061.5S", -5000000: "PT-5S", 1500: "PT0.0015S",
	} {
		if got := microsISO(us); got != want {
			t.Errorf("microsISO(%d) = %q, want %q", us, got, want)
		}
	}
	for _, c := range []struct {
		b     []byte
		scale int
		want  string
	}{
		{[]byte{0x01, 0xE2, 0x3A}, 2, "1234.50"},
		{[]byte{0xFB}, 2, "-0.05"},
		{[]byte{0x00}, 3, "0.000"},
		{[]byte{0x7B}, 0, "123"},
		{[]byte{0x7B}, -2, "12300"},
		{[]byte{}, 1, "0.0"},
	} {
		if got := decimalString(c.b, c.scale); got != c.want {
			t.Errorf("decimalString(% x, %d) = %q, want %q", c.b, c.scale, got, c.want)
		}
	}
}

// debeziumAvroValue is a value schema as Debezium's PostgreSQL connector registers it with the
// AvroConverter (decimal.handling.mode=precise), trimmed to a few columns.
const debeziumAvroValue = `{"type":"record","name":"Envelope","namespace":"dbserver1.inventory.orders","fields":[
 {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
   {"name":"id","type":{"type":"int","connect.default":0},"default":0},
   {"name":"amount","type":["null",{"type":"bytes","scale":2,"precision":10,"connect.version":1,
     "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
     "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null},
   {"name":"qty","type":["null",{"type":"int","connect.type":"int16"}],"default":null},
   {"name":"created_at","type":["null",{"type":"long","connect.version":1,"connect.name":"io.debezium.time.MicroTimestamp"}],"default":null},
   {"name":"legacy_ts","type":["null",{"type":"long","connect.version":1,"connect.name":"io.debezium.time.Timestamp"}],"default":null},
   {"name":"tags","type":["null",{"type":"array","items":["null","string"]}],"default":null}
  ],"connect.name":"dbserver1.inventory.orders.Value"}],"default":null},
 {"name":"after","type":["null","Value"],"default":null},
 {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[
   {"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},
   {"name":"ts_ms","type":"long"},
   {"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},
     "connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},
   {"name":"db","type":"string"},{"name":"sequence","type":["null","string"],"default":null},
   {"name":"schema","type":"string"},{"name":"table","type":"string"},
   {"name":"txId","type":["null","long"],"default":null},{"name":"lsn","type":["null","long"],"default":null},
   {"name":"xmin","type":["null","long"],"default":null}],"connect.name":"io.debezium.connector.postgresql.Source"}},
 {"name":"op","type":"string"},
 {"name":"ts_ms","type":["null","long"],"default":null},
 {"name":"transaction","type":["null",{"type":"record","name":"block","namespace":"event","fields":[
   {"name":"id","type":"string"},{"name":"total_order","type":"long"},{"name":"data_collection_order","type":"long"}],
   "connect.version":1,"connect.name":"event.block"}],"default":null}
],"connect.version":1,"connect.name":"dbserver1.inventory.orders.Envelope"}`

// debeziumAvroRecord is a value of debeziumAvroValue, for hamba's generic encoder.
func debeziumAvroRecord() map[string]any {
	return map[string]any{
		"before": nil,
		"after": map[string]any{"dbserver1.inventory.orders.Value": map[string]any{
			"id": 1001, "amount": big.NewRat(123450, 100), "qty": 2, "created_at": int64(1714557600000001),
			"legacy_ts": int64(1714557600123), "tags": []any{"fragile", nil},
		}},
		"source": map[string]any{
			"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": int64(1714638600000),
			"snapshot": "false", "db": "shop", "sequence": nil, "schema": "inventory", "table": "orders",
			"txId": int64(555), "lsn": int64(24023128), "xmin": nil,
		},
		"op": "c", "ts_ms": int64(1714638600456), "transaction": nil,
	}
}

// singleObject frames an Avro body in single-object encoding.
func singleObject(fp uint64, body []byte) []byte {
	msg := make([]byte, soeHeaderLen, soeHeaderLen+len(body))
	msg[0], msg[1] = soeMagic0, soeMagic1
	binary.LittleEndian.PutUint64(msg[2:], fp)
	return append(msg, body...)
}

// TestDecodeDebeziumAvro decodes an Avro value written with Debezium's schema (body produced by
// hamba's generic encoder, framed in single-object encoding): kinds come from connect.name.
func TestDecodeDebeziumAvro(t *testing.T) {
	ctx := context.Background()
	store := NewSchemaStore()
	fp, err := store.Add([]byte(debeziumAvroValue))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := store.Lookup(fp)
	body, err := avro.Marshal(s, debeziumAvroRecord())
	if err != nil {
		t.Fatal(err)
	}
	msg := singleObject(fp, body)

	dec, _ := NewDecoder(Schemas(store))
	got, err := dec.Decode(ctx, "dbserver1.inventory.orders", nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	want := &change.Event{
		Op: change.OpCreate,
		Table: &change.Table{Schema: "inventory", Name: "orders", Columns: []change.Column{
			{Name: "id", Kind: change.KindInt32},
			{Name: "amount", Kind: change.KindNumeric},
			{Name: "qty", Kind: change.KindInt16},
			{Name: "created_at", Kind: change.KindTimestamp},
			{Name: "legacy_ts", Kind: change.KindTimestamp},
			{Name: "tags", Kind: change.KindArray, Elem: change.KindString},
		}},
		After: change.Row{"id": int32(1001), "amount": "1234.50", "qty": int32(2),
			"created_at": int64(1714557600000001), "legacy_ts": int64(1714557600123000), "tags": []any{"fragile", nil}},
		Source: change.Source{Connector: "postgresql", Name: "dbserver1", DB: "shop", Schema: "inventory",
			Table: "orders", TxID: 555, LSN: 24023128, TsMs: 1714638600000, Snapshot: "false"},
		TsMs: 1714638600456,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s\nwant %s", dump(got), dump(want))
	}
}
