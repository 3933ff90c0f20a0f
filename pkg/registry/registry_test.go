package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/registry"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestAPI checks the read-only endpoints and Confluent's error bodies.
func TestAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	writeItems(ctx, t, k.Brokers())
	// A missing topic beside the real one holds no schema and is no error.
	srv := httptest.NewServer(registry.New([]kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}, []string{schemaTopic, "none._schemas"}).Handler())
	defer srv.Close()

	enc, err := codec.NewEncoder(codec.Format(codec.FormatAvroConfluent), codec.TopicPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, valueJSON, err := enc.Schemas(items)
	if err != nil {
		t.Fatal(err)
	}
	valueID := idOf(t, valueJSON)

	tests := []struct {
		path   string
		status int
		want   string // a substring of the body
	}{
		{"/schemas/ids/" + fmt.Sprint(valueID), 200, `{"schema":"{\"name\":\"wh.public.items.Envelope\"`},
		{"/schemas/ids/" + fmt.Sprint(valueID) + "/schema", 200, `{"name":"wh.public.items.Envelope"`},
		{"/schemas/ids/" + fmt.Sprint(idOf(t, keyJSON)), 200, `\"name\":\"wh.public.items.Key\"`},
		{"/schemas/ids/12345", 404, `{"error_code":40403,"message":"Schema 12345 not found"}`},
		{"/schemas/ids/abc", 404, `"error_code":40403`},
		{"/subjects", 200, `["wh.public.items-key","wh.public.items-value"]`},
		{"/subjects/wh.public.items-value/versions", 200, `[1]`},
		{"/subjects/wh.public.items-value/versions/latest", 200, fmt.Sprintf(`"id":%d`, valueID)},
		{"/subjects/wh.public.items-value/versions/1", 200, `"subject":"wh.public.items-value"`},
		{"/subjects/wh.public.items-value/versions/2", 404, `"error_code":40402`},
		{"/subjects/nope-value/versions", 404, `"error_code":40401`},
		{"/config", 200, `"compatibilityLevel":"NONE"`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
				t.Errorf("GET %s = %d %s, want %d with %s", tt.path, resp.StatusCode, body, tt.status, tt.want)
			}
		})
	}
}

func idOf(t *testing.T, schema []byte) uint32 {
	t.Helper()
	st := codec.NewSchemaStore()
	fp, err := st.Add(schema)
	if err != nil {
		t.Fatal(err)
	}
	return codec.ConfluentID(fp)
}

// TestDecoders reads the avro-confluent records back with franz-go's registry client pointed at
// the API (as any Confluent deserializer does) and with backflow's Decoder, which finds the
// derived ids in the schema topic without any registry.
func TestDecoders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	writeItems(ctx, t, k.Brokers())
	srv := httptest.NewServer(registry.New([]kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}, []string{schemaTopic}).Handler())
	defer srv.Close()
	recs, err := testenv.ConsumeAll(ctx, k.Brokers(), itemsTopic)
	if err != nil {
		t.Fatal(err)
	}
	schemaRecs, err := testenv.ConsumeAll(ctx, k.Brokers(), schemaTopic)
	if err != nil {
		t.Fatal(err)
	}
	store := codec.NewSchemaStore()
	for _, r := range schemaRecs {
		if _, err := store.AddRecord(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	local, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	viaAPI, err := codec.NewDecoder(codec.DecoderRegistry(rc))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(itemEvents()) {
		t.Fatalf("%d records on %s, want %d", len(recs), itemsTopic, len(itemEvents()))
	}
	for _, r := range recs {
		a, err := local.Decode(ctx, r.Topic, r.Key, r.Value)
		if err != nil {
			t.Fatalf("backflow decoder with the schema topic: %v", err)
		}
		b, err := viaAPI.Decode(ctx, r.Topic, r.Key, r.Value)
		if err != nil {
			t.Fatalf("backflow decoder through the registry API: %v", err)
		}
		ja, _ := json.Marshal([]any{a.Op, a.After, a.Before})
		jb, _ := json.Marshal([]any{b.Op, b.After, b.Before})
		if string(ja) != string(jb) || a.Table.Name != "items" {
			t.Errorf("offset %d: schema topic gives %s, API gives %s", r.Offset, ja, jb)
		}
	}
	// Without the schema in the store an id is unknown, so sinks read the schema topic again.
	empty, _ := codec.NewDecoder()
	if _, err := empty.Decode(ctx, recs[0].Topic, recs[0].Key, recs[0].Value); err == nil || !strings.Contains(err.Error(), "unknown writer schema") {
		t.Errorf("decode without the schema: %v, want ErrUnknownSchema", err)
	}
}
