package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/connectors/hubspot/hubspottest"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// stub starts a hubspottest server for the test.
func stub(t *testing.T, opts hubspottest.Options) *hubspottest.Server {
	t.Helper()
	s := hubspottest.NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// open builds a contacts connector (key email) against url, with extra settings, and the
// observer of its logs.
func open(t *testing.T, url string, kv ...any) (*Connector, *observer.ObservedLogs) {
	t.Helper()
	with := map[string]any{"token": hubspottest.DefaultToken, "object_type": "contacts", "base_url": url}
	for i := 0; i < len(kv); i += 2 {
		with[kv[i].(string)] = kv[i+1]
	}
	core, logs := observer.New(zap.DebugLevel)
	c, err := New(context.Background(), sink.Params{Sink: "leads", With: with, Key: []string{"email"}, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*Connector), logs
}

// contact is an upsert of a contact with these fields (email is the key).
func contact(email string, kv ...any) sink.Record {
	f := map[string]any{"email": email}
	for i := 0; i < len(kv); i += 2 {
		f[kv[i].(string)] = kv[i+1]
	}
	return sink.Record{Op: sink.OpUpsert, Key: map[string]any{"email": email}, Fields: f}
}

// contacts makes n contacts lead<i>@example.com with a score.
func contacts(n int) *sink.Batch {
	b := &sink.Batch{Sink: "leads", Topic: "wh.analytics.lead_scores"}
	for i := range n {
		b.Records = append(b.Records, contact(fmt.Sprintf("lead%d@example.com", i), "score", int64(i), "vip", i%2 == 0))
	}
	return b
}

func batchOf(recs ...sink.Record) *sink.Batch { return &sink.Batch{Sink: "leads", Records: recs} }

func apply(c sink.Connector, b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Apply(ctx, b)
}

// applyRetrying applies like the runtime does: retryable errors are retried after their delay.
func applyRetrying(t *testing.T, c sink.Connector, b *sink.Batch) (retries int, err error) {
	t.Helper()
	for range 50 {
		err = apply(c, b)
		if !sink.IsRetryable(err) {
			return retries, err
		}
		retries++
		time.Sleep(max(sink.RetryDelay(err), 20*time.Millisecond))
	}
	return retries, fmt.Errorf("still failing: %w", err)
}

// upsertBodies decodes the batch upsert requests the server received.
func upsertBodies(t *testing.T, s *hubspottest.Server) []batchInputs[upsertInput] {
	t.Helper()
	var out []batchInputs[upsertInput]
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "/batch/upsert") {
			var b batchInputs[upsertInput]
			if err := json.Unmarshal(r.Body, &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// assertRejected checks err is a non-retryable PartialError with these indexes and reasons.
func assertRejected(t *testing.T, err error, want map[int]string) {
	t.Helper()
	var pe *sink.PartialError
	if !errors.As(err, &pe) || sink.IsRetryable(err) {
		t.Fatalf("want a non-retryable *sink.PartialError, got %v", err)
	}
	if len(pe.Failed) != len(want) {
		t.Fatalf("failed %+v, want %v", pe.Failed, want)
	}
	for _, f := range pe.Failed {
		if w, ok := want[f.Index]; !ok || !strings.Contains(f.Reason, w) {
			t.Errorf("failure %+v, want one of %v", f, want)
		}
	}
}

func TestUpsertInBatchesOfAtMost100(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	if err := apply(c, contacts(250)); err != nil {
		t.Fatal(err)
	}
	bodies := upsertBodies(t, s)
	if len(bodies) != 3 {
		t.Fatalf("%d upsert requests, want 3", len(bodies))
	}
	traces := map[string]bool{}
	for _, b := range bodies {
		if len(b.Inputs) > MaxInputs {
			t.Errorf("request with %d inputs", len(b.Inputs))
		}
		for _, in := range b.Inputs {
			if in.IDProperty != "email" || in.Properties["email"] != in.ID || traces[in.TraceID] {
				t.Errorf("input %+v", in)
			}
			traces[in.TraceID] = true
		}
	}
	if n := s.ObjectCount("contacts"); n != 250 {
		t.Errorf("%d contacts stored, want 250", n)
	}
	o, ok := s.Object("contacts", "email", "lead7@example.com")
	if !ok || o.Properties["score"] != "7" || o.Properties["vip"] != "false" {
		t.Errorf("lead7 = %+v", o)
	}
}

func TestPartialFailureByMultiStatus(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	b := contacts(150)
	b.Records[3] = contact("not-an-email", "score", int64(3))
	b.Records[120] = contact("also@bad", "score", int64(120))
	err := apply(c, b)
	assertRejected(t, err, map[int]string{3: "INVALID_EMAIL", 120: "Email address also@bad is invalid"})
	if n := s.ObjectCount("contacts"); n != 148 {
		t.Errorf("%d contacts stored, want the other 148", n)
	}
}

func TestBadRequestNamingInputsResendsTheRest(t *testing.T) {
	s := stub(t, hubspottest.Options{AllOrNothing: true})
	c, _ := open(t, s.URL)
	b := contacts(5)
	b.Records[1] = contact("nope", "score", int64(1))
	assertRejected(t, apply(c, b), map[int]string{1: "VALIDATION_ERROR"})
	if n := s.ObjectCount("contacts"); n != 4 {
		t.Errorf("%d contacts stored, want 4", n)
	}
	if got := len(upsertBodies(t, s)); got != 2 {
		t.Errorf("%d upsert requests, want 2 (refused, then the rest)", got)
	}
}

func TestBadRequestNamingNoInputFailsTheBatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"status":"error","message":"Property values were not valid: [{\"error\":\"INVALID_EMAIL\"}]","correlationId":"x","category":"VALIDATION_ERROR"}`)
	}))
	defer srv.Close()
	c, _ := open(t, srv.URL)
	err := apply(c, contacts(3))
	var pe *sink.PartialError
	if err == nil || sink.IsRetryable(err) || errors.As(err, &pe) || !strings.Contains(err.Error(), "400 VALIDATION_ERROR") {
		t.Fatalf("want a plain batch error (the runtime bisects), got %v", err)
	}
}

func TestTenSecondlyLimitPacedAndRetried(t *testing.T) {
	s := stub(t, hubspottest.Options{RequestsPerWindow: 10, Window: time.Second})
	c, _ := open(t, s.URL)
	s.Consume(10) // another integration spent the window
	b := contacts(300)
	retries, err := applyRetrying(t, c, b)
	if err != nil {
		t.Fatal(err)
	}
	cnt := s.Counters()
	if retries == 0 || cnt.RateLimited == 0 {
		t.Errorf("retries %d, 429s %d: the full window should have answered 429 first", retries, cnt.RateLimited)
	}
	if n := s.ObjectCount("contacts"); n != 300 {
		t.Errorf("%d contacts stored, want 300: nothing may be lost", n)
	}
	// A 429 may reach the client after a sibling request's error cancelled it: <=, not ==.
	if st := c.Status(); st.Throttled == 0 || st.Throttled > int64(cnt.RateLimited) {
		t.Errorf("status %+v, stub counted %d 429s", st, cnt.RateLimited)
	}
}

func TestTenSecondlyRetryDelay(t *testing.T) {
	s := stub(t, hubspottest.Options{RequestsPerWindow: 3, Window: 2 * time.Second, RetryAfter: true})
	c, _ := open(t, s.URL)
	s.Consume(3)
	err := apply(c, contacts(1))
	if d := sink.RetryDelay(err); !sink.IsRetryable(err) || d <= 0 || d > 2*time.Second || !strings.Contains(err.Error(), "TEN_SECONDLY_ROLLING") {
		t.Fatalf("want a RetryAfter within the window, got %v (delay %v)", err, d)
	}
}

func TestSecondlyLimitRetried(t *testing.T) {
	s := stub(t, hubspottest.Options{PerSecond: 2})
	c, _ := open(t, s.URL)
	b := contacts(500) // 5 requests, 4 at once
	retries, err := applyRetrying(t, c, b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Counters().RateLimited == 0 || retries == 0 {
		t.Errorf("expected SECONDLY 429s to be retried: %+v, %d retries", s.Counters(), retries)
	}
	if n := s.ObjectCount("contacts"); n != 500 {
		t.Errorf("%d contacts stored, want 500", n)
	}
}

func TestPacedUnderTheBudget(t *testing.T) {
	// The stub allows 100 requests per rolling 10 s, as configured: the connector's own pacing
	// (a burst of 5, then 9.5/s) must avoid any 429.
	s := stub(t, hubspottest.Options{RequestsPerWindow: 100})
	c, _ := open(t, s.URL)
	start := time.Now()
	for range 2 {
		if err := apply(c, contacts(1000)); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if n := s.Counters().RateLimited; n != 0 {
		t.Errorf("%d requests answered 429, want none", n)
	}
	if want := 15 * time.Second * 10 / 95; elapsed < want-100*time.Millisecond {
		t.Errorf("20 requests in %v, want about %v: not paced at 9.5/s after the burst", elapsed, want)
	}
}

func TestAdaptsToAnnouncedBudget(t *testing.T) {
	s := stub(t, hubspottest.Options{RequestsPerWindow: 20, Window: 10 * time.Second})
	c, logs := open(t, s.URL) // configured for 100 per 10 s
	if err := apply(c, contacts(100)); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("pacing HubSpot requests to a new budget").Len() != 1 {
		t.Errorf("no adaptation to X-HubSpot-RateLimit-Max logged")
	}
	c.pacer.mu.Lock()
	budget := c.pacer.budget
	c.pacer.mu.Unlock()
	if budget != 20 {
		t.Errorf("budget %d, want the announced 20", budget)
	}
}

func TestDailyLimitPauses(t *testing.T) {
	s := stub(t, hubspottest.Options{DailyLimit: 1})
	c, logs := open(t, s.URL, "time_zone", "America/New_York")
	fixed := time.Date(2024, 5, 1, 23, 0, 0, 0, time.UTC) // 19:00 in New York
	c.pacer.now = func() time.Time { return fixed }
	s.Consume(1) // the day's budget is spent
	err := apply(c, contacts(10))
	want := 5*time.Hour + time.Minute // until midnight in New York (04:00 UTC), plus a minute
	if !sink.IsRetryable(err) || sink.RetryDelay(err) != want || !strings.Contains(err.Error(), "DAILY") {
		t.Fatalf("want a RetryAfter of %v, got %v (delay %v)", want, err, sink.RetryDelay(err))
	}
	sent := s.Counters().Requests
	err = apply(c, contacts(10))
	if !sink.IsRetryable(err) || sink.RetryDelay(err) != want || s.Counters().Requests != sent {
		t.Errorf("while paused: %v (delay %v), %d requests sent", err, sink.RetryDelay(err), s.Counters().Requests-sent)
	}
	if got := logs.FilterMessageSnippet("HubSpot daily limit reached; pausing until 2024-05-02T00:01:00-04:00").Len(); got != 1 {
		t.Errorf("pause logged %d times, want once", got)
	}
	if st := c.Status(); !st.PausedUntil.Equal(fixed.Add(want)) {
		t.Errorf("status %+v", st)
	}
	fixed = fixed.Add(want) // the next day
	s.ResetDaily()
	if err := apply(c, contacts(10)); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
}

func TestDailyRemainingZeroPausesBeforeA429(t *testing.T) {
	s := stub(t, hubspottest.Options{DailyLimit: 2})
	c, _ := open(t, s.URL)
	for range 2 {
		if err := apply(c, contacts(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(c, contacts(1)); !sink.IsRetryable(err) || sink.RetryDelay(err) <= 0 {
		t.Fatalf("want the pause once Daily-Remaining is 0, got %v", err)
	}
	if cnt := s.Counters(); cnt.Requests != 2 || cnt.RateLimited != 0 {
		t.Errorf("counters %+v: the third batch must not be sent", cnt)
	}
}

func TestTokenExpiryMidRun(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, logs := open(t, s.URL)
	if err := apply(c, contacts(10)); err != nil {
		t.Fatal(err)
	}
	s.ExpireToken()
	for range 2 {
		err := apply(c, contacts(20))
		var pe *sink.PartialError
		if !sink.IsRetryable(err) || errors.As(err, &pe) || !strings.Contains(err.Error(), "401 EXPIRED_AUTHENTICATION") {
			t.Fatalf("expired token: want a retryable batch error, got %v", err)
		}
		if strings.Contains(err.Error(), hubspottest.DefaultToken) {
			t.Fatal("the error quotes the token")
		}
	}
	if n := logs.FilterMessageSnippet("rotate with.token").Len(); n != 1 {
		t.Errorf("token alert logged %d times, want once", n)
	}
	if c.Status().Stalled != "token" {
		t.Errorf("status %+v", c.Status())
	}
	s.RestoreToken() // the operator rotated the token (the stub accepts it again)
	if err := apply(c, contacts(20)); err != nil {
		t.Fatal(err)
	}
	if n := s.ObjectCount("contacts"); n != 20 || c.Status().Stalled != "" {
		t.Errorf("%d contacts, status %+v", n, c.Status())
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), hubspottest.DefaultToken) || strings.Contains(e.Message, hubspottest.DefaultToken) {
			t.Errorf("the token was logged: %v", e)
		}
	}
}

func TestDuplicateApplyIsHarmless(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	b := contacts(120)
	if err := apply(c, b); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Object("contacts", "email", "lead42@example.com")
	if err := apply(c, b); err != nil { // as after a capture crash: the same changes again
		t.Fatal(err)
	}
	after, _ := s.Object("contacts", "email", "lead42@example.com")
	if s.ObjectCount("contacts") != 120 || after.ID != before.ID || after.Changes != before.Changes ||
		fmt.Sprint(after.Properties) != fmt.Sprint(before.Properties) {
		t.Errorf("state changed: before %+v, after %+v (%d objects)", before, after, s.ObjectCount("contacts"))
	}
}

func TestDeletes(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	if err := apply(c, contacts(5)); err != nil {
		t.Fatal(err)
	}
	del := func(email string) sink.Record {
		return sink.Record{Op: sink.OpDelete, Key: map[string]any{"email": email}}
	}
	b := batchOf(del("lead1@example.com"), del("LEAD3@example.com"), del("ghost@example.com"), contact("new@example.com"))
	if err := apply(c, b); err != nil {
		t.Fatal(err)
	}
	for email, want := range map[string]bool{"lead1@example.com": false, "lead3@example.com": false, "lead2@example.com": true, "new@example.com": true} {
		if _, ok := s.Object("contacts", "email", email); ok != want {
			t.Errorf("%s present = %v, want %v", email, ok, want)
		}
	}
	if cnt := s.Counters(); cnt.Reads != 1 || cnt.Archives != 1 {
		t.Errorf("counters %+v: want one batch read and one batch archive", cnt)
	}
	if err := apply(c, b); err != nil { // deleting again: nothing left to archive
		t.Fatal(err)
	}
}

func TestTruncateRefusedPerRecord(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	b := batchOf(contact("a@example.com", "v", "1"), sink.Record{Op: sink.OpTruncate}, contact("a@example.com", "v", "2"))
	assertRejected(t, apply(c, b), map[int]string{1: "truncate is not supported by HubSpot"})
	// The key repeats across the truncate: two requests, in order, the last state wins.
	if got := len(upsertBodies(t, s)); got != 2 {
		t.Errorf("%d upsert requests, want 2", got)
	}
	if o, _ := s.Object("contacts", "email", "a@example.com"); o.Properties["v"] != "2" {
		t.Errorf("v = %q, want 2", o.Properties["v"])
	}
}

func TestAssociations(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	acme := s.Seed("companies", map[string]string{"domain": "acme.com", "name": "Acme"})
	c, _ := open(t, s.URL, "associations", []any{map[string]any{
		"to_object_type": "companies", "to_id_property": "domain", "from_field": "company_domain", "association_type_id": 279}})
	b := batchOf(
		contact("ada@example.com", "company_domain", "acme.com"),
		contact("bob@example.com", "company_domain", "unknown.example"),
		contact("cy@example.com"),
		contact("di@example.com", "company_domain", "acme.com"),
	)
	assertRejected(t, apply(c, b), map[int]string{1: `no record has domain = "unknown.example"`})
	for _, email := range []string{"ada@example.com", "di@example.com"} {
		o, _ := s.Object("contacts", "email", email)
		if got := s.Associated("contacts", o.ID, "companies"); len(got) != 1 || got[0] != acme+"/279" {
			t.Errorf("%s associations %v, want [%s/279]", email, got, acme)
		}
		if _, sent := o.Properties["company_domain"]; sent {
			t.Errorf("company_domain sent as a property: %v", o.Properties)
		}
	}
	if s.ObjectCount("contacts") != 4 {
		t.Errorf("%d contacts: the rejected association must not undo the upsert", s.ObjectCount("contacts"))
	}
	if err := apply(c, batchOf(b.Records[0], b.Records[3])); err != nil { // again: harmless
		t.Fatal(err)
	}
}

func TestRetryableStatuses(t *testing.T) {
	for code, wantDelay := range map[int]time.Duration{500: 0, 502: 0, 503: 0, 408: 0, 403: 0, 404: 0, 423: 2 * time.Second} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, `{"status":"error","message":"nope","category":"SOMETHING"}`)
		}))
		c, _ := open(t, srv.URL)
		err := apply(c, contacts(2))
		if !sink.IsRetryable(err) || sink.RetryDelay(err) != wantDelay {
			t.Errorf("%d: want retryable after %v, got %v (%v)", code, wantDelay, err, sink.RetryDelay(err))
		}
		srv.Close()
	}
}

func TestUnencodableRecordRejected(t *testing.T) {
	s := stub(t, hubspottest.Options{})
	c, _ := open(t, s.URL)
	b := batchOf(contact("a@example.com", "score", math.NaN()), contact("b@example.com", "score", 1.5),
		sink.Record{Op: sink.OpUpsert, Key: map[string]any{"email": ""}, Fields: map[string]any{"email": ""}})
	assertRejected(t, apply(c, b), map[int]string{0: "property score", 2: "key value is empty"})
	if o, _ := s.Object("contacts", "email", "b@example.com"); o.Properties["score"] != "1.5" {
		t.Errorf("b = %v", o.Properties)
	}
}

func TestPropertyValue(t *testing.T) {
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   any
		want string
	}{
		{nil, ""}, {"x", "x"}, {true, "true"}, {false, "false"}, {int32(-7), "-7"}, {int64(1) << 40, "1099511627776"},
		{uint8(9), "9"}, {2.5, "2.5"}, {float32(0.1), "0.1"}, {1e21, "1000000000000000000000"}, {"12.340", "12.340"},
		{at, "1714557600000"}, {[]byte("hi"), "aGk="}, {[]any{"a", "b", int64(3)}, "a;b;3"}, {[]string{"x", "y"}, "x;y"},
		{map[string]any{"k": 1}, `{"k":1}`}, {[]any{[]any{1}}, "[[1]]"}, {json.Number("42"), "42"},
	} {
		got, err := PropertyValue(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("PropertyValue(%#v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	infinite := time.UnixMicro(math.MaxInt64) // PostgreSQL's infinity, as package mapping gives it
	for _, bad := range []any{math.Inf(1), math.NaN(), []any{math.NaN()}, infinite, []any{infinite}} {
		if _, err := PropertyValue(bad); err == nil {
			t.Errorf("PropertyValue(%v): want an error", bad)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"token": "t", "object_type": "contacts"}
	}
	assoc := func(kv ...any) map[string]any {
		m := map[string]any{"to_object_type": "companies", "to_id_property": "domain", "from_field": "company_domain", "association_type_id": 279}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		set  map[string]any
		key  []string
		want string
	}{
		{map[string]any{"token": nil}, nil, "with.token: required"},
		{map[string]any{"token": "a b"}, nil, "with.token: contains white space"},
		{map[string]any{"object_type": nil}, nil, "with.object_type: required"},
		{map[string]any{"object_type": "con/tacts"}, nil, "with.object_type:"},
		{map[string]any{"id_property": "domain"}, nil, `with.id_property: "domain" must be the sink's key field "email"`},
		{nil, []string{"email", "portal"}, "key: the hubspot connector needs exactly one key field"},
		{map[string]any{"base_url": "ftp://x"}, nil, "with.base_url:"},
		{map[string]any{"requests_per_10s": 0}, nil, "with.requests_per_10s:"},
		{map[string]any{"requests_per_10s": "lots"}, nil, "with.requests_per_10s:"},
		{map[string]any{"timeout": "soon"}, nil, "with.timeout:"},
		{map[string]any{"time_zone": "Mars/Olympus"}, nil, "with.time_zone:"},
		{map[string]any{"tokn": "x"}, nil, "with.tokn: unknown setting"},
		{map[string]any{"associations": "companies"}, nil, "with.associations: expected a list"},
		{map[string]any{"associations": []any{assoc("to_object_type", nil)}}, nil, "with.associations[0].to_object_type: required"},
		{map[string]any{"associations": []any{assoc(), assoc("association_type_id", -1)}}, nil, "with.associations[1].association_type_id:"},
		{map[string]any{"associations": []any{assoc("association_category", "MINE")}}, nil, "with.associations[0].association_category:"},
		{map[string]any{"associations": []any{assoc("extra", 1)}}, nil, "with.associations[0].extra: unknown setting"},
	} {
		with := base()
		for k, v := range tc.set {
			if v == nil {
				delete(with, k)
			} else {
				with[k] = v
			}
		}
		key := tc.key
		if key == nil {
			key = []string{"email"}
		}
		_, err := New(context.Background(), sink.Params{Sink: "s", With: with, Key: key})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("with %v key %v: error %v, want %q", tc.set, key, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "a b") {
			t.Errorf("the error quotes the token: %v", err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := New(context.Background(), sink.Params{Sink: "s", Key: []string{"domain"},
		With: map[string]any{"token": "t", "object_type": "companies", "requests_per_10s": 190, "soft_delete_column": "archived"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.(*Connector).cfg
	if cfg.idProperty != "domain" || cfg.baseURL != DefaultBaseURL || cfg.requestsPer10s != 190 || cfg.timeout != DefaultTimeout || cfg.location != time.UTC {
		t.Errorf("config %+v", cfg)
	}
	if burst := c.(*Connector).pacer.lim.Burst(); burst != 9 {
		t.Errorf("burst %d, want 9 (190 - 95%% of 190)", burst)
	}
}
