package codec

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/change"
)

// fixture reads a file of testdata/debezium (see its README for the documentation each follows).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/debezium/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pgSource(table, snapshot string) change.Source {
	return change.Source{Connector: "postgresql", Name: "dbserver1", DB: "shop", Schema: "inventory",
		Table: table, TxID: 556, LSN: 24023128, TsMs: 1714638600000, Snapshot: snapshot}
}

// cols builds table columns from name, kind pairs; the first is the key.
func cols(pairs ...any) []change.Column {
	var cs []change.Column
	for i := 0; i < len(pairs); i += 2 {
		c := change.Column{Name: pairs[i].(string), Kind: pairs[i+1].(change.Kind), Key: i == 0}
		if c.Kind == change.KindArray {
			c.Elem = change.KindString
		}
		cs = append(cs, c)
	}
	return cs
}

var articleCols = cols("id", change.KindInt32, "title", change.KindString, "body", change.KindString,
	"photo", change.KindBytes, "tags", change.KindArray, "doc", change.KindJSON, "price", change.KindNumeric)

// TestDecodeDebeziumFixtures decodes each documented Debezium record to the event backflow applies
// (nil: read and ignored, neither applied nor dead-lettered).
func TestDecodeDebeziumFixtures(t *testing.T) {
	tests := []struct {
		name, topic, key, value string // key and value: fixture file names, or literal JSON
		want                    *change.Event
	}{
		{"decimal precise", "dbserver1.inventory.prices", `{"id":1}`, "pg-decimal-precise.json", &change.Event{
			Op:     change.OpCreate,
			Table:  &change.Table{Schema: "inventory", Name: "prices", Columns: cols("id", change.KindInt32, "amount", change.KindNumeric, "ratio", change.KindNumeric)},
			After:  change.Row{"id": int32(1), "amount": "1234.50", "ratio": "3.14159"},
			Source: pgSource("prices", "false"), TsMs: 1714638600456,
		}},
		{"decimal string", "dbserver1.inventory.prices", `{"id":1}`, "pg-decimal-string.json", &change.Event{
			Op:     change.OpCreate,
			Table:  &change.Table{Schema: "inventory", Name: "prices", Columns: cols("id", change.KindInt32, "amount", change.KindString, "ratio", change.KindString)},
			After:  change.Row{"id": int32(1), "amount": "1234.50", "ratio": "3.14159"},
			Source: pgSource("prices", "false"), TsMs: 1714638600456,
		}},
		{"decimal double", "dbserver1.inventory.prices", `{"id":1}`, "pg-decimal-double.json", &change.Event{
			Op:     change.OpCreate,
			Table:  &change.Table{Schema: "inventory", Name: "prices", Columns: cols("id", change.KindInt32, "amount", change.KindFloat64, "ratio", change.KindFloat64)},
			After:  change.Row{"id": int32(1), "amount": 1234.5, "ratio": 3.14159},
			Source: pgSource("prices", "false"), TsMs: 1714638600456,
		}},
		{"temporal and semantic types", "dbserver1.inventory.kinds", `{"id":7}`, "pg-types.json", &change.Event{
			Op: change.OpRead,
			Table: &change.Table{Schema: "inventory", Name: "kinds", Columns: cols("id", change.KindInt32,
				"d", change.KindDate, "t_ms", change.KindTime, "t_us", change.KindTime, "t_ns", change.KindTime,
				"ts_ms", change.KindTimestamp, "ts_us", change.KindTimestamp, "ts_ns", change.KindTimestamp,
				"tstz", change.KindTimestampTZ, "ttz", change.KindString, "mood", change.KindEnum,
				"doc", change.KindJSON, "uid", change.KindUUID)},
			After: change.Row{"id": int32(7), "d": int32(19844), "t_ms": int64(36000123000), "t_us": int64(36000123456),
				"t_ns": int64(36000123456), "ts_ms": int64(1714557600123000), "ts_us": int64(1714557600123456),
				"ts_ns": int64(1714557600123456), "tstz": "2024-05-01T10:00:00.123456Z", "ttz": "10:00:00.123456Z",
				"mood": "happy", "doc": `{"a": [1, 2]}`, "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
			Source: pgSource("kinds", "true"), TsMs: 1714638600456,
		}},
		{"unchanged TOAST placeholders", "dbserver1.inventory.articles", "pg-articles-key.json", "pg-toast-update.json", &change.Event{
			Op:    change.OpUpdate,
			Table: &change.Table{Schema: "inventory", Name: "articles", Columns: articleCols},
			After: change.Row{"id": int32(42), "title": "new title", "body": nil, "photo": nil, "tags": nil,
				"doc": nil, "price": nil},
			UnchangedToast: []string{"body", "photo", "tags", "doc", "price"},
			Source:         pgSource("articles", "false"), TsMs: 1714638600456,
		}},
		{"unchanged TOAST placeholders without schema", "dbserver1.inventory.articles", `{"id":42}`, "pg-toast-update-schemaless.json", &change.Event{
			Op: change.OpUpdate,
			Table: &change.Table{Schema: "inventory", Name: "articles", Columns: cols("id", change.KindInt64,
				"title", change.KindString, "body", change.KindString, "photo", change.KindString, "tags", change.KindArray,
				"doc", change.KindString, "price", change.KindString)},
			After: change.Row{"id": int64(42), "title": "new title", "body": nil, "photo": nil, "tags": nil,
				"doc": nil, "price": nil},
			UnchangedToast: []string{"body", "photo", "tags", "doc", "price"},
			Source:         pgSource("articles", "false"), TsMs: 1714638600456,
		}},
		{"delete", "dbserver1.inventory.articles", "pg-articles-key.json", "pg-toast-delete.json", &change.Event{
			Op:    change.OpDelete,
			Table: &change.Table{Schema: "inventory", Name: "articles", Columns: articleCols},
			Before: change.Row{"id": int32(42), "title": nil, "body": nil, "photo": nil, "tags": nil,
				"doc": nil, "price": nil},
			Source: pgSource("articles", "false"), TsMs: 1714638600789,
		}},
		{"tombstone", "dbserver1.inventory.articles", "pg-articles-key.json", "", nil},
		{"heartbeat", "__debezium-heartbeat.dbserver1", "heartbeat-key.json", "heartbeat-value.json", nil},
		{"heartbeat on a renamed topic", "hb.dbserver1", "heartbeat-key.json", "heartbeat-value.json", nil},
		{"transaction begin", "dbserver1.transaction", `{"id":"571:53195829"}`, "transaction-begin.json", nil},
		{"transaction end", "dbserver1.transaction", `{"id":"571:53195832"}`, "transaction-end.json", nil},
		{"logical decoding message", "dbserver1.message", "", `{"op":"m","ts_ms":1,"source":{"connector":"postgresql"},"message":{"prefix":"p","content":"AA=="}}`, nil},
		{"mysql schema change", "mysql", "", "mysql-schema-change.json", nil},
		{"mysql create", "mysql-server-1.inventory.customers", "mysql-key.json", "mysql-create.json", &change.Event{
			Op: change.OpCreate,
			Table: &change.Table{Schema: "inventory", Name: "customers", Columns: cols("id", change.KindInt32,
				"first_name", change.KindString, "last_name", change.KindString, "email", change.KindString)},
			After: change.Row{"id": int32(1004), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"},
			Source: change.Source{Connector: "mysql", Name: "mysql-server-1", DB: "inventory", Table: "customers",
				Snapshot: "false"},
			TsMs: 1465491411815,
		}},
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	load := func(s string) []byte {
		if s == "" || strings.HasPrefix(s, "{") {
			return []byte(s)
		}
		return fixture(t, s)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dec.Decode(context.Background(), tt.topic, load(tt.key), load(tt.value))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

// TestUnavailableValueConfigured reads a placeholder set with Debezium's "hex:" form, and leaves
// the default one alone once another is configured.
func TestUnavailableValueConfigured(t *testing.T) {
	value := strings.ReplaceAll(string(fixture(t, "pg-toast-update.json")), DefaultUnavailableValue, "--toast--")
	dec, err := NewDecoder(UnavailableValue("hex:2d2d746f6173742d2d")) // "--toast--"
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.Decode(context.Background(), "dbserver1.inventory.articles", []byte(`{"id":42}`), []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	// photo and price still hold the default placeholder's base64: real bytes for this decoder.
	if !reflect.DeepEqual(ev.UnchangedToast, []string{"body", "tags", "doc"}) || ev.After["body"] != nil {
		t.Fatalf("unchanged %v, after %v", ev.UnchangedToast, ev.After)
	}
	if string(ev.After["photo"].([]byte)) != DefaultUnavailableValue {
		t.Fatalf("photo = %q", ev.After["photo"])
	}
	for _, bad := range []string{"hex:zz", "hex:"} {
		if _, err := NewDecoder(UnavailableValue(bad)); err == nil {
			t.Errorf("UnavailableValue(%q): no error", bad)
		}
	}
}

// registryStub serves schemas as a Confluent Schema Registry does: GET /schemas/ids/{id} answers
// {"schema": "<the schema as a string>"}, an unknown id 404 with error_code 40403.
func registryStub(t *testing.T, schemas map[int]string) (*sr.Client, *atomic.Int64) {
	t.Helper()
	var gets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/schemas/ids/"))
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/schemas/ids/") || err != nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error_code":404,"message":"HTTP 404 Not Found"}`))
			return
		}
		gets.Add(1)
		s, ok := schemas[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error_code":40403,"message":"Schema ` + strconv.Itoa(id) + ` not found"}`))
			return
		}
		b, _ := json.Marshal(map[string]string{"schema": s})
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl, &gets
}

// confluentFrame frames an Avro body in the Confluent wire format: magic 0, 4-byte id, body.
func confluentFrame(id uint32, body []byte) []byte {
	msg := make([]byte, registryHeaderLen, registryHeaderLen+len(body))
	binary.BigEndian.PutUint32(msg[1:], id)
	return append(msg, body...)
}

// TestDecodeDebeziumAvroRegistry reads what Debezium writes with the AvroConverter: Confluent
// framing, the writer schema fetched by id from the registry (once), the placeholder in string,
// bytes and array columns, and heartbeats dropped by their record name.
func TestDecodeDebeziumAvroRegistry(t *testing.T) {
	ctx := context.Background()
	envText, hbText := string(fixture(t, "pg-articles-value.avsc")), string(fixture(t, "heartbeat-value.avsc"))
	cl, gets := registryStub(t, map[int]string{21: envText, 22: hbText})
	dec, err := NewDecoder(DecoderRegistry(cl))
	if err != nil {
		t.Fatal(err)
	}
	env := avro.MustParse(envText)
	ph := DefaultUnavailableValue
	body, err := avro.Marshal(env, map[string]any{
		"before": nil,
		"after": map[string]any{"dbserver1.inventory.articles.Value": map[string]any{
			"id": 42, "title": map[string]any{"string": "new title"}, "body": map[string]any{"string": ph},
			"photo": map[string]any{"bytes": []byte(ph)}, "tags": map[string]any{"array": []any{ph}},
			"doc": map[string]any{"string": `{"k": 1}`},
		}},
		"source": map[string]any{
			"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": int64(1714638600000),
			"snapshot": map[string]any{"string": "false"}, "db": "shop", "sequence": nil, "schema": "inventory",
			"table": "articles", "txId": int64(556), "lsn": int64(24023128), "xmin": nil,
		},
		"op": "u", "ts_ms": int64(1714638600456), "transaction": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &change.Event{
		Op: change.OpUpdate,
		Table: &change.Table{Schema: "inventory", Name: "articles", Columns: []change.Column{
			{Name: "id", Kind: change.KindInt32}, {Name: "title", Kind: change.KindString},
			{Name: "body", Kind: change.KindString}, {Name: "photo", Kind: change.KindBytes},
			{Name: "tags", Kind: change.KindArray, Elem: change.KindString}, {Name: "doc", Kind: change.KindJSON},
		}},
		After: change.Row{"id": int32(42), "title": "new title", "body": nil, "photo": nil, "tags": nil,
			"doc": `{"k": 1}`},
		UnchangedToast: []string{"body", "photo", "tags"},
		Source:         pgSource("articles", "false"), TsMs: 1714638600456,
	}
	for range 2 {
		got, err := dec.Decode(ctx, "dbserver1.inventory.articles", nil, confluentFrame(21, body))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got  %s\nwant %s", dump(got), dump(want))
		}
	}
	// An array that merely holds the placeholder among other values is an array like any other.
	body, err = avro.Marshal(env, map[string]any{
		"before": nil,
		"after": map[string]any{"dbserver1.inventory.articles.Value": map[string]any{
			"id": 43, "title": nil, "body": nil, "photo": nil, "tags": map[string]any{"array": []any{ph, "x"}}, "doc": nil,
		}},
		"source": map[string]any{
			"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": int64(1714638600000),
			"snapshot": map[string]any{"string": "false"}, "db": "shop", "sequence": nil, "schema": "inventory",
			"table": "articles", "txId": int64(556), "lsn": int64(24023128), "xmin": nil,
		},
		"op": "c", "ts_ms": int64(1714638600456), "transaction": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.Decode(ctx, "dbserver1.inventory.articles", nil, confluentFrame(21, body))
	if err != nil || got.UnchangedToast != nil || !reflect.DeepEqual(got.After["tags"], []any{ph, "x"}) {
		t.Fatalf("partial placeholder array: %v, %s", err, dump(got))
	}
	hb, err := avro.Marshal(avro.MustParse(hbText), map[string]any{"ts_ms": int64(1714638600000)})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := dec.Decode(ctx, "hb.dbserver1", nil, confluentFrame(22, hb)); ev != nil || err != nil {
		t.Fatalf("heartbeat: %v, %v", ev, err)
	}
	if n := gets.Load(); n != 2 {
		t.Errorf("registry asked %d times, want once per id (2)", n)
	}
	if _, err := dec.Decode(ctx, "t", nil, confluentFrame(99, body)); err == nil || !strings.Contains(err.Error(), "unknown writer schema") {
		t.Errorf("unknown id: %v", err)
	}
}

// TestDecodeDebeziumDecimalForms reads the other spellings of decimals: JsonConverter's
// decimal.format=NUMERIC (a JSON number) and decimal.handling.mode=string with
// column.propagate.source.type, whose source type makes the text a numeric.
func TestDecodeDebeziumDecimalForms(t *testing.T) {
	// edit changes the amount field of a fixture: its schema in before and after, and its value.
	edit := func(name string, field func(map[string]any), value any) string {
		var rec map[string]any
		if err := json.Unmarshal(fixture(t, name), &rec); err != nil {
			t.Fatal(err)
		}
		for _, side := range rec["schema"].(map[string]any)["fields"].([]any)[:2] {
			field(side.(map[string]any)["fields"].([]any)[1].(map[string]any))
		}
		rec["payload"].(map[string]any)["after"].(map[string]any)["amount"] = value
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	numeric := edit("pg-decimal-precise.json", func(map[string]any) {}, json.Number("1234.5"))
	typed := edit("pg-decimal-string.json", func(f map[string]any) {
		f["parameters"] = map[string]any{"__debezium.source.column.type": "NUMERIC",
			"__debezium.source.column.length": "10", "__debezium.source.column.scale": "2"}
	}, "1234.50")
	dec, _ := NewDecoder()
	for _, tt := range []struct {
		name, value string
		kind        change.Kind
		pgType      string
	}{
		{"decimal.format=NUMERIC", numeric, change.KindNumeric, ""},
		{"string mode with the source type", typed, change.KindNumeric, "numeric"},
	} {
		ev, err := dec.Decode(context.Background(), "dbserver1.inventory.prices", []byte(`{"id":1}`), []byte(tt.value))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		c, _ := ev.Table.Column("amount")
		if ev.After["amount"] != "1234.50" || c.Kind != tt.kind || c.PGType != tt.pgType {
			t.Errorf("%s: amount %v, column %+v", tt.name, ev.After["amount"], c)
		}
	}
}

func TestDecimalNumber(t *testing.T) {
	params := map[string]any{"scale": "2"}
	for raw, want := range map[string]string{"1234.5": "1234.50", "-0.05": "-0.05", "1.2345E+3": "1234.50", "7": "7.00"} {
		if got, err := decimalNumber(json.RawMessage(raw), params); err != nil || got != want {
			t.Errorf("decimalNumber(%s) = %v, %v; want %s", raw, got, err, want)
		}
	}
	for _, raw := range []string{"1e999999999", "1e", "true", "1.2.3"} {
		if _, err := decimalNumber(json.RawMessage(raw), params); err == nil {
			t.Errorf("decimalNumber(%s): no error", raw)
		}
	}
}

// TestDecodeFlattenedRowsSayWhy: a row that Debezium's ExtractNewRecordState transform took out
// of its envelope (AvroConverter, JsonConverter with and without schemas) has no op and cannot be
// applied; the error, which becomes the dead letter's reason, names the transform.
func TestDecodeFlattenedRowsSayWhy(t *testing.T) {
	ctx := context.Background()
	rowSchema := `{"type":"record","name":"Value","namespace":"dbserver1.inventory.articles","fields":[` +
		`{"name":"id","type":"int"},{"name":"title","type":["null","string"],"default":null},` +
		`{"name":"__deleted","type":["null","string"],"default":null}]}`
	cl, _ := registryStub(t, map[int]string{31: rowSchema})
	dec, err := NewDecoder(DecoderRegistry(cl))
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(avro.MustParse(rowSchema), map[string]any{"id": 42, "title": map[string]any{"string": "t"}, "__deleted": nil})
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string][]byte{
		"avro":             confluentFrame(31, body),
		"json":             []byte(`{"id":42,"title":"t","__deleted":"false"}`),
		"json with schema": []byte(`{"schema":{"type":"struct","fields":[{"field":"id","type":"int32"}]},"payload":{"id":42}}`),
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := dec.Decode(ctx, "dbserver1.inventory.articles", []byte(`{"id":42}`), value)
			if err == nil || !strings.Contains(err.Error(), "ExtractNewRecordState") {
				t.Fatalf("decoded %+v, error %v: want an error naming ExtractNewRecordState", ev, err)
			}
		})
	}
}
