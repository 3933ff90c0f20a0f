package salesforce

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/connectors/salesforce/sftest"
	"github.com/backflow-dev/backflow/pkg/sink"
)

const (
	clientID     = "3MVG9-test-client"
	clientSecret = "s3cret-consumer-secret"
	extField     = "Warehouse_Id__c"
)

// stub starts a stand-in Salesforce that knows the test's client credentials.
func stub(t *testing.T, cfg sftest.Config) *sftest.Server {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = clientID, clientSecret
	s := sftest.New(cfg)
	t.Cleanup(s.Close)
	return s
}

// settings are the `with` block of a Lead sink against s, plus kv.
func settings(s *sftest.Server, kv ...any) map[string]any {
	with := map[string]any{"login_url": s.URL, "client_id": clientID, "client_secret": clientSecret,
		"sobject": "Lead", "external_id_field": extField}
	for i := 0; i < len(kv); i += 2 {
		with[kv[i].(string)] = kv[i+1]
	}
	return with
}

// open builds a connector for settings, logging to log (nil: nowhere).
func open(t *testing.T, with map[string]any, log *zap.Logger) sink.Connector {
	t.Helper()
	c, err := New(context.Background(), sink.Params{Sink: "crm", With: with, Key: []string{extField}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ext is the external id of record i.
func ext(i int) string { return fmt.Sprintf("W-%05d", i) }

// lead is an upsert of record i with a LastName and a score.
func lead(i int, score int64) sink.Record {
	return sink.Record{Op: sink.OpUpsert, Key: map[string]any{extField: ext(i)},
		Fields:     map[string]any{extField: ext(i), "LastName": fmt.Sprintf("Name %d", i), "Score__c": score},
		FieldOrder: []string{extField, "LastName", "Score__c"}, Topic: "wh.public.leads", Offset: int64(i)}
}

// leads makes n upserts of records from..from+n-1.
func leads(from, n int, score int64) *sink.Batch {
	b := &sink.Batch{Sink: "crm", Topic: "wh.public.leads"}
	for i := from; i < from+n; i++ {
		b.Records = append(b.Records, lead(i, score))
	}
	return b
}

// withoutField removes a field from a record, as if its source column were unchanged TOAST.
func withoutField(r *sink.Record, name string) {
	delete(r.Fields, name)
	r.FieldOrder = slices.DeleteFunc(slices.Clone(r.FieldOrder), func(n string) bool { return n == name })
}

func apply(c sink.Connector, b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Apply(ctx, b)
}

// failedIndexes returns the indexes of a *sink.PartialError, failing the test for other errors.
func failedIndexes(t *testing.T, err error) []int {
	t.Helper()
	var pe *sink.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *sink.PartialError, got %v", err)
	}
	var idx []int
	for _, f := range pe.Failed {
		idx = append(idx, f.Index)
	}
	return idx
}

// field returns a stored field as text.
func field(t *testing.T, s *sftest.Server, id, name string) (string, bool) {
	t.Helper()
	rec, ok := s.Record("Lead", extField, id)
	if !ok {
		t.Fatalf("record %s missing", id)
	}
	v, ok := rec[name]
	return fmt.Sprint(v), ok
}

func TestCollectionsAtTheMaximum(t *testing.T) {
	s := stub(t, sftest.Config{})
	c := open(t, settings(s), nil)
	if err := apply(c, leads(0, 450, 7)); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Collections != 3 || st.CollectionRecords != 450 || st.BulkJobs != 0 || st.TokenRequests != 1 {
		t.Fatalf("stats %+v: want 3 collection requests (200+200+50), one login", st)
	}
	if n := s.Count("Lead"); n != 450 {
		t.Fatalf("%d leads, want 450", n)
	}
	if v, _ := field(t, s, ext(449), "LastName"); v != "Name 449" {
		t.Fatalf("LastName %q", v)
	}
}

func TestPartialFailureReportsTheRejectedIndexes(t *testing.T) {
	s := stub(t, sftest.Config{Required: map[string][]string{"Lead": {"LastName"}}})
	c := open(t, settings(s), nil)
	b := leads(0, 450, 1)
	bad := []int{3, 201, 449}
	for _, i := range bad {
		withoutField(&b.Records[i], "LastName")
	}
	err := apply(c, b)
	if got := failedIndexes(t, err); !slices.Equal(got, bad) {
		t.Fatalf("failed %v, want %v", got, bad)
	}
	var pe *sink.PartialError
	errors.As(err, &pe)
	if r := pe.Failed[0].Reason; !strings.Contains(r, "REQUIRED_FIELD_MISSING") || !strings.Contains(r, "LastName") {
		t.Fatalf("reason %q", r)
	}
	if n := s.Count("Lead"); n != 447 {
		t.Fatalf("%d leads applied, want 447", n)
	}
}

func TestTokenExpiryMidBatchLosesNothing(t *testing.T) {
	s := stub(t, sftest.Config{})
	core, logs := observer.New(zapcore.InfoLevel)
	c := open(t, settings(s), zap.New(core))
	if err := apply(c, leads(0, 10, 1)); err != nil {
		t.Fatal(err)
	}
	s.ExpireAfter(1) // the batch's first request goes through, the next ones meet 401
	if err := apply(c, leads(10, 450, 1)); err != nil {
		t.Fatalf("the batch must be applied after logging in again: %v", err)
	}
	st := s.Stats()
	if st.TokenRequests != 2 || st.Unauthorized < 1 {
		t.Fatalf("stats %+v: want one re-login after a 401", st)
	}
	if n := s.Count("Lead"); n != 460 {
		t.Fatalf("%d leads, want 460: nothing may be lost", n)
	}
	if logs.FilterMessageSnippet("logged in again").Len() != 1 {
		t.Fatalf("want one re-login log line, got %v", logs.All())
	}
	assertNoSecrets(t, logs)
}

func TestLoginFailureIsRetryableAndQuietAboutSecrets(t *testing.T) {
	s := stub(t, sftest.Config{})
	core, logs := observer.New(zapcore.DebugLevel)
	c := open(t, settings(s, "client_secret", "wrong-secret-value"), zap.New(core))
	err := apply(c, leads(0, 5, 1))
	if !sink.IsRetryable(err) || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("want a retryable invalid_client error, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("the error quotes the secret: %v", err)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "wrong-secret-value") {
			t.Fatalf("a log line quotes the secret: %v", e)
		}
	}
}

// assertNoSecrets checks that no log line carries the client secret or an access token.
func assertNoSecrets(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, clientSecret) || strings.Contains(line, "00D000000000001!") {
			t.Fatalf("a log line carries a secret or token: %s", line)
		}
	}
}

// writeKey stores key as a PKCS #8 PEM file and returns its path.
func writeKey(t *testing.T, key *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "server.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestJWTBearerFlow(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := stub(t, sftest.Config{PublicKey: &key.PublicKey, Username: "integration@example.com"})
	jwt := func(keyFile string) map[string]any {
		with := settings(s, "auth", "jwt", "username", "integration@example.com", "private_key_file", keyFile)
		delete(with, "client_secret")
		return with
	}
	c := open(t, jwt(writeKey(t, key)), nil)
	if err := apply(c, leads(0, 20, 1)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.TokenRequests != 1 || s.Count("Lead") != 20 {
		t.Fatalf("stats %+v, %d leads", st, s.Count("Lead"))
	}

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c = open(t, jwt(writeKey(t, other)), nil)
	if err := apply(c, leads(0, 1, 1)); !sink.IsRetryable(err) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("an assertion signed with another key: want a retryable invalid_grant, got %v", err)
	}
}

func TestBulkPathMatchesShuffledResultsByExternalID(t *testing.T) {
	s := stub(t, sftest.Config{Required: map[string][]string{"Lead": {"LastName"}}, BulkPolls: 2, Seed: 7})
	c := open(t, settings(s), nil)
	b := leads(0, 5000, 3)
	var bad []int
	for i := 7; i < 5000; i += 500 {
		withoutField(&b.Records[i], "LastName")
		bad = append(bad, i)
	}
	err := apply(c, b)
	if got := failedIndexes(t, err); !slices.Equal(got, bad) {
		t.Fatalf("failed %v, want %v", got, bad)
	}
	var pe *sink.PartialError
	errors.As(err, &pe)
	if r := pe.Failed[0].Reason; !strings.Contains(r, "REQUIRED_FIELD_MISSING") || !strings.Contains(r, "bulk job") {
		t.Fatalf("reason %q", r)
	}
	st := s.Stats()
	if st.BulkJobs != 1 || st.BulkRecords != 5000 || st.Collections != 0 {
		t.Fatalf("stats %+v: want one bulk job and no collection requests", st)
	}
	if n := s.Count("Lead"); n != 5000-len(bad) {
		t.Fatalf("%d leads, want %d", n, 5000-len(bad))
	}
	if v, _ := field(t, s, ext(4999), "Score__c"); v != "3" {
		t.Fatalf("Score__c %q", v)
	}

	// The same records again, all valid now: updates, nothing rejected.
	if err := apply(c, leads(0, 5000, 4)); err != nil {
		t.Fatal(err)
	}
	if v, _ := field(t, s, ext(7), "Score__c"); v != "4" || s.Count("Lead") != 5000 {
		t.Fatalf("Score__c %q, %d leads", v, s.Count("Lead"))
	}
}

func TestBulkRecordsWithoutResultsAreUpsertedAgain(t *testing.T) {
	s := stub(t, sftest.Config{OmitResults: 5})
	c := open(t, settings(s, "bulk_threshold", 100), nil)
	if err := apply(c, leads(0, 300, 1)); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.BulkJobs != 1 || st.Collections != 1 || st.CollectionRecords != 5 {
		t.Fatalf("stats %+v: want the 5 unreported records re-sent in one collection request", st)
	}
	if s.Count("Lead") != 300 {
		t.Fatalf("%d leads", s.Count("Lead"))
	}
}

// TestBulkJobsAreAbortedOnEveryWayOut checks that a job the connector gives up on is aborted
// (PATCH {"state":"Aborted"}), so it cannot go on writing after a retry wrote newer values.
func TestBulkJobsAreAbortedOnEveryWayOut(t *testing.T) {
	cases := []struct {
		name  string
		polls int
		with  []any
		setup func(s *sftest.Server)
		ctx   time.Duration
	}{
		// Calls: create the job, upload, UploadComplete, then polls.
		{name: "upload fails", polls: 1, setup: func(s *sftest.Server) { s.InjectErrorsAfter(1, 1, 400, "INVALIDBATCH", "bad upload") }},
		{name: "poll fails", polls: 5, setup: func(s *sftest.Server) { s.InjectErrorsAfter(4, 1, 400, "INVALIDJOB", "bad poll") }},
		{name: "context cancelled", polls: 1 << 30, ctx: 700 * time.Millisecond},
		{name: "bulk_timeout", polls: 1 << 30, with: []any{"bulk_timeout", "500ms"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := stub(t, sftest.Config{BulkPolls: tc.polls})
			c := open(t, settings(s, append([]any{"bulk_threshold", 2}, tc.with...)...), nil)
			if tc.setup != nil {
				tc.setup(s)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if tc.ctx > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tc.ctx)
			}
			defer cancel()
			if err := c.Apply(ctx, leads(0, 5, 1)); err == nil {
				t.Fatal("the attempt succeeded; want it to fail")
			}
			states := s.JobStates()
			if len(states) != 1 || s.Stats().BulkAborts != 1 {
				t.Fatalf("jobs %v, %d aborts: want the one job aborted", states, s.Stats().BulkAborts)
			}
			for id, st := range states {
				if st != "Aborted" {
					t.Fatalf("job %s is %s, want Aborted", id, st)
				}
			}
		})
	}
}

func TestRequestLimitExceededWaitsAndRetries(t *testing.T) {
	s := stub(t, sftest.Config{Budget: 2, Window: time.Hour})
	core, logs := observer.New(zapcore.InfoLevel)
	c := open(t, settings(s, "max_concurrency", 1, "limit_backoff", "90s"), zap.New(core))
	err := apply(c, leads(0, 450, 1))
	if !sink.IsRetryable(err) || sink.RetryDelay(err) != 90*time.Second {
		t.Fatalf("want RetryAfter 90s, got %v (delay %s)", err, sink.RetryDelay(err))
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "REQUEST_LIMIT_EXCEEDED" || ae.Status != 403 {
		t.Fatalf("error %v", err)
	}
	if st := s.Stats(); st.LimitRejections != 1 || st.Collections != 2 {
		t.Fatalf("stats %+v", st)
	}
	if logs.FilterMessageSnippet("REQUEST_LIMIT_EXCEEDED").Len() != 1 {
		t.Fatalf("want a log line naming REQUEST_LIMIT_EXCEEDED, got %v", logs.All())
	}
}

func TestPacingKeepsUnderTheBudget(t *testing.T) {
	s := stub(t, sftest.Config{Budget: 5, Window: 200 * time.Millisecond})
	c := open(t, settings(s, "requests_per_second", 20), nil)
	start := time.Now()
	if err := apply(c, leads(0, 10*200, 1)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.LimitRejections != 0 || st.Collections != 10 {
		t.Fatalf("stats %+v: pacing at 20/s must stay under 5 per 200ms", st)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("10 requests at 20/s took %s: not paced", d)
	}
}

func TestConcurrencyCapIsRespected(t *testing.T) {
	s := stub(t, sftest.Config{Latency: 30 * time.Millisecond})
	c := open(t, settings(s, "max_concurrency", 3), nil)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for p := range 4 {
		wg.Go(func() { errs[p] = apply(c, leads(p*1000, 1000, 1)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.MaxConcurrent > 3 || st.MaxConcurrent < 2 || st.Collections != 20 {
		t.Fatalf("stats %+v: want at most 3 requests in flight (and some parallelism)", st)
	}
	if s.Count("Lead") != 4000 {
		t.Fatalf("%d leads", s.Count("Lead"))
	}
}

func TestDuplicatedChangesAreHarmless(t *testing.T) {
	s := stub(t, sftest.Config{})
	c := open(t, settings(s), nil)
	b := leads(0, 300, 5)
	for range 2 { // as after a capture crash: the same changes again
		if err := apply(c, b); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Count("Lead"); n != 300 {
		t.Fatalf("%d leads, want 300", n)
	}
	// One external id twice in a batch (e.g. 42 and "42"): the later record wins.
	twice := &sink.Batch{Records: []sink.Record{lead(1, 10), lead(1, 11)}}
	twice.Records[0].Key[extField] = int64(1)
	twice.Records[1].Key[extField] = "1"
	if err := apply(c, twice); err != nil {
		t.Fatal(err)
	}
	if v, _ := field(t, s, "1", "Score__c"); v != "11" {
		t.Fatalf("Score__c %q, want the later record's 11", v)
	}
}

func TestDeletesAndTruncates(t *testing.T) {
	s := stub(t, sftest.Config{})
	c := open(t, settings(s), nil)
	if err := apply(c, leads(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	del := func(i int) sink.Record {
		return sink.Record{Op: sink.OpDelete, Key: map[string]any{extField: ext(i)}}
	}
	b := &sink.Batch{Records: []sink.Record{del(1), del(9), {Op: sink.OpTruncate}, lead(4, 1)}}
	err := apply(c, b)
	if got := failedIndexes(t, err); !slices.Equal(got, []int{2}) {
		t.Fatalf("failed %v, want only the truncate", got)
	}
	if !strings.Contains(err.Error(), "truncate") {
		t.Fatalf("error %v", err)
	}
	if _, ok := s.Record("Lead", extField, ext(1)); ok {
		t.Fatal("W-00001 not deleted")
	}
	if s.Count("Lead") != 3 || s.Stats().Deletes != 1 {
		t.Fatalf("%d leads, stats %+v", s.Count("Lead"), s.Stats())
	}
	// A replayed delete (404) is harmless.
	if err := apply(c, &sink.Batch{Records: []sink.Record{del(1)}}); err != nil {
		t.Fatal(err)
	}
}

func TestErrorClassification(t *testing.T) {
	s := stub(t, sftest.Config{})
	c := open(t, settings(s), nil)
	s.InjectErrors(1, 500, "UNKNOWN_EXCEPTION", "An unexpected error occurred")
	if err := apply(c, leads(0, 10, 1)); !sink.IsRetryable(err) {
		t.Fatalf("500: want retryable, got %v", err)
	}
	s.InjectErrors(1, 400, "INVALID_FIELD", "No such column 'Foo__c' on sobject of type Lead")
	err := apply(c, leads(0, 10, 1))
	var ae *APIError
	if sink.IsRetryable(err) || !errors.As(err, &ae) || ae.Code != "INVALID_FIELD" || !strings.Contains(err.Error(), "No such column") {
		t.Fatalf("400: want a permanent error with errorCode and message, got %v", err)
	}
	s.InjectErrors(1, 400, sftest.CodeExceededLimit, "record limit reached")
	if err := apply(c, leads(0, 10, 1)); sink.IsRetryable(err) || !strings.Contains(err.Error(), sftest.CodeExceededLimit) {
		t.Fatalf("want a permanent error, got %v", err)
	}
}

func TestFieldValueEncoding(t *testing.T) {
	s := stub(t, sftest.Config{})
	c := open(t, settings(s), nil)
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	r := lead(1, 1)
	r.Fields = map[string]any{extField: ext(1), "LastName": "Ng", "At__c": at, "Active__c": true, "Ratio__c": 1.5,
		"Tags__c": []any{"a", "b"}, "Meta__c": map[string]any{"k": 1}, "Gone__c": nil, "Big__c": int64(1) << 40}
	r.FieldOrder = nil
	nan := lead(2, 1)
	nan.Fields["Ratio__c"] = math.NaN()
	inf := lead(3, 1)
	inf.Fields["At__c"] = time.Unix(math.MaxInt32*24*60*60, 0) // PostgreSQL's infinite date, as package mapping gives it
	infList := lead(4, 1)
	infList.Fields["Tags__c"] = []any{time.UnixMicro(math.MinInt64)}
	err := apply(c, &sink.Batch{Records: []sink.Record{r, nan, inf, infList}})
	if got := failedIndexes(t, err); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("failed %v, want the NaN and the infinity records", got)
	}
	sent := s.LastRecords()[0]
	want := map[string]string{"At__c": "2024-05-01T10:00:00.123Z", "Active__c": "true", "Ratio__c": "1.5",
		"Tags__c": "a;b", "Meta__c": `{"k":1}`, "Big__c": "1099511627776", extField: ext(1), "Gone__c": "<nil>"}
	for k, v := range want {
		if got := fmt.Sprint(sent[k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if typ := sent["attributes"].(map[string]any)["type"]; typ != "Lead" {
		t.Errorf("attributes.type %v", typ)
	}
	if got := csvValue(at) + "," + csvValue(nil) + "," + csvValue("") + "," + csvValue(2.5); got != "2024-05-01T10:00:00.123Z,#N/A,#N/A,2.5" {
		t.Errorf("CSV cells %s", got)
	}
}

func TestSignJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := SignJWT(key, "iss", "sub", "https://login.salesforce.com", time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "eyJhbGciOiJSUzI1NiJ9" {
		t.Fatalf("assertion %s", tok)
	}
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &claims); err != nil || claims["exp"] != float64(1180) || claims["aud"] != "https://login.salesforce.com" {
		t.Fatalf("claims %v (%v)", claims, err)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	s := stub(t, sftest.Config{})
	base := settings(s)
	cases := []struct {
		change map[string]any
		key    []string
		want   string
	}{
		{map[string]any{"sobject": nil}, nil, "with.sobject"},
		{map[string]any{"sobject": "Lead; DROP"}, nil, "with.sobject"},
		{map[string]any{"external_id_field": nil}, nil, "with.external_id_field"},
		{map[string]any{"client_id": nil}, nil, "with.client_id"},
		{map[string]any{"client_secret": nil}, nil, "with.client_secret"},
		{map[string]any{"auth": "password"}, nil, "with.auth"},
		{map[string]any{"auth": "jwt"}, nil, "with.username"},
		{map[string]any{"auth": "jwt", "username": "u@example.com"}, nil, "with.private_key_file"},
		{map[string]any{"auth": "jwt", "username": "u@example.com", "private_key_file": "/nonexistent.pem"}, nil, "with.private_key_file"},
		{map[string]any{"login_url": "ftp://x"}, nil, "with.login_url"},
		{map[string]any{"api_version": "61"}, nil, "with.api_version"},
		{map[string]any{"bulk_threshold": 0}, nil, "with.bulk_threshold"},
		{map[string]any{"max_concurrency": "many"}, nil, "with.max_concurrency"},
		{map[string]any{"timeout": "soon"}, nil, "with.timeout"},
		{map[string]any{"limit_backoff": "-1s"}, nil, "with.limit_backoff"},
		{map[string]any{"requests_per_second": 0}, nil, "with.requests_per_second"},
		{map[string]any{"colour": "red"}, nil, "with.colour"},
		{nil, []string{"a", "b"}, "key:"},
	}
	for _, tc := range cases {
		with := map[string]any{}
		for k, v := range base {
			with[k] = v
		}
		for k, v := range tc.change {
			if v == nil {
				delete(with, k)
			} else {
				with[k] = v
			}
		}
		key := tc.key
		if key == nil {
			key = []string{extField}
		}
		_, err := New(context.Background(), sink.Params{Sink: "crm", With: with, Key: key})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error starting with %s", tc.change, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), clientSecret) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
	if _, err := New(context.Background(), sink.Params{With: base, Key: []string{extField}}); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
}
