package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestValidateConnect runs `validate --connect` against a real PostgreSQL (source and target),
// kfake and a HubSpot stub: first with roles that lack what the pipeline needs, where every
// problem must be listed under its part and the exit code be 1; then with roles that have it,
// where every part must pass. Neither run may write anything: no publication, slot or offsets
// table appears.
func TestValidateConnect(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	for _, sql := range []string{
		`CREATE TABLE public.items (id int PRIMARY KEY, name text)`,
		`CREATE TABLE public.dest (id int PRIMARY KEY, name text)`,
		`CREATE ROLE weak LOGIN`, // no REPLICATION, no grants
		`GRANT SELECT ON public.dest TO weak`,
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	hubspot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}`)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/crm/v3/properties/contacts" {
			t.Errorf("hubspot check sent %s %s; it may only read properties", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"results":[{"name":"email"},{"name":"firstname"},{"name":"hs_object_id","modificationMetadata":{"readOnlyValue":true}}]}`)
	}))
	defer hubspot.Close()

	weakURL := fmt.Sprintf("postgres://weak@127.0.0.1:%d/postgres?sslmode=disable", pg.Port())
	pipeline := func(url, token, field string) string {
		return fmt.Sprintf(`source:
  postgres:
    url: %q
    tables: [public.items]
kafka:
  brokers: [%s]
sinks:
  - name: pgdest
    from: [public.items]
    connector: postgres
    with: {url: %q, table: public.dest}
    key: [id]
    map: {id: after.id, name: after.name}
  - name: crm
    from: [public.items]
    connector: hubspot
    with: {token: %q, object_type: contacts, id_property: email, base_url: %q}
    key: [email]
    map: {email: after.name, %s: after.name}
  - name: hook
    from: [public.items]
    connector: http
    with: {url: "http://127.0.0.1:1/hook"}
    key: [id]
`, url, kf.Addr(), url, token, hubspot.URL, field)
	}
	write := func(name, content string) string {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	out, code := runBinary(t, bin, nil, "validate", "--connect", "-c", write("weak.yaml", pipeline(weakURL, "bad", "score")))
	if code != 1 {
		t.Fatalf("validate --connect with missing privileges: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"FAILED  source",
		`role "weak" may not use replication`,
		"role cannot read public.items",
		`publication "backflow" is missing and the capture role may not create it`,
		"ok      kafka",
		"FAILED  sink pgdest (postgres)",
		"the role lacks INSERT on public.dest",
		"the role lacks UPDATE on public.dest",
		"the role lacks DELETE on public.dest",
		"offsets table public.backflow_offsets is missing and the role may not create it",
		"FAILED  sink crm (hubspot)",
		"HubSpot refused the token",
		"skipped sink hook (http)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate --connect with missing privileges: output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", out)
	}

	out, code = runBinary(t, bin, nil, "validate", "--connect", "-c", write("unknown.yaml", pipeline(pg.URL("postgres"), "good", "score")))
	if code != 1 || !strings.Contains(out, `contacts has no property "score"`) || !strings.Contains(out, "ok      sink pgdest (postgres)") ||
		!strings.Contains(out, "ok      source") {
		t.Fatalf("validate --connect with an unknown HubSpot property: exit %d\n%s", code, out)
	}

	out, code = runBinary(t, bin, nil, "validate", "--connect", "-c", write("good.yaml", pipeline(pg.URL("postgres"), "good", "firstname")))
	if code != 0 || strings.Count(out, "ok      ") != 4 {
		t.Fatalf("validate --connect with every privilege: exit %d, want 0 and four parts ok\n%s", code, out)
	}

	sinkOnly := fmt.Sprintf("kafka:\n  brokers: [%s]\nsinks:\n  - name: fromtopic\n    topics: [nosuch.topic]\n    connector: postgres\n"+
		"    with: {url: %q, table: public.dest}\n    key: [id]\n", kf.Addr(), pg.URL("postgres"))
	out, code = runBinary(t, bin, nil, "validate", "--connect", "-c", write("sinkonly.yaml", sinkOnly))
	if code != 1 || !strings.Contains(out, "FAILED  kafka") || !strings.Contains(out, "topic nosuch.topic does not exist") {
		t.Fatalf("validate --connect of a sink-only pipeline reading a missing topic: exit %d\n%s", code, out)
	}

	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pubs, slots int
	var offsets *string
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_publication), (SELECT count(*) FROM pg_replication_slots),
		to_regclass('public.backflow_offsets')::text`).Scan(&pubs, &slots, &offsets); err != nil {
		t.Fatal(err)
	}
	if pubs != 0 || slots != 0 || offsets != nil {
		t.Fatalf("validate --connect wrote: %d publication(s), %d slot(s), offsets table %v", pubs, slots, offsets)
	}

	// A publication created by hand that leaves deletes and truncates out, and the key out of its
	// column list.
	if err := pg.Exec(ctx, `CREATE PUBLICATION backflow FOR TABLE public.items (name) WITH (publish = 'insert, update')`); err != nil {
		t.Fatal(err)
	}
	out, code = runBinary(t, bin, nil, "validate", "--connect", "-c", write("narrow.yaml", pipeline(pg.URL("postgres"), "good", "firstname")))
	if code != 1 || !strings.Contains(out, `publication "backflow" does not publish delete, truncate`) ||
		!strings.Contains(out, `leaves key column "id" out of its column list`) {
		t.Fatalf("validate --connect with a publication leaving operations and the key out: exit %d\n%s", code, out)
	}
}
