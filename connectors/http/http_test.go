package httpsink

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// received is one request the test server got.
type received struct {
	header http.Header
	body   []byte
	pay    Payload
}

// server is a webhook receiver that records requests and answers with reply.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []received
	reply func(w http.ResponseWriter, n int, p Payload) // n counts requests from 0
}

func newServer(t *testing.T, reply func(w http.ResponseWriter, n int, p Payload)) *server {
	t.Helper()
	s := &server{reply: reply}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p Payload
	_ = json.Unmarshal(body, &p)
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, received{header: r.Header.Clone(), body: body, pay: p})
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if s.reply != nil {
		s.reply(w, n, p)
	}
}

func (s *server) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.reqs...)
}

func ok(w http.ResponseWriter, _ int, _ Payload) { w.WriteHeader(http.StatusOK) }

func status(code int, body string) func(http.ResponseWriter, int, Payload) {
	return func(w http.ResponseWriter, _ int, _ Payload) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// open builds a connector posting to url with extra settings.
func open(t *testing.T, url string, kv ...any) sink.Connector {
	t.Helper()
	with := map[string]any{"url": url}
	for i := 0; i < len(kv); i += 2 {
		with[kv[i].(string)] = kv[i+1]
	}
	c, err := New(context.Background(), sink.Params{Sink: "crm", With: with, Key: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// batch makes n upserts of consecutive offsets from 100.
func batch(n int) *sink.Batch {
	b := &sink.Batch{Sink: "crm", Topic: "wh.public.leads", Partition: 2}
	for i := range n {
		b.Records = append(b.Records, sink.Record{Op: sink.OpUpsert, Key: map[string]any{"id": int64(i)},
			Fields: map[string]any{"id": int64(i), "score": 0.5}, Topic: b.Topic, Partition: 2, Offset: int64(100 + i)})
	}
	return b
}

func apply(c sink.Connector, b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Apply(ctx, b)
}

func TestRequestShape(t *testing.T) {
	s := newServer(t, ok)
	c := open(t, s.URL+"/hook", "headers", map[string]any{"Authorization": "Bearer t0ken", "x-tenant": "acme"})
	at := time.Date(2024, 5, 1, 10, 0, 0, 1000, time.UTC)
	b := &sink.Batch{Sink: "crm", Topic: "wh.public.leads", Partition: 2, Records: []sink.Record{
		{Op: sink.OpUpsert, Key: map[string]any{"id": int64(7)}, Topic: "wh.public.leads", Partition: 2, Offset: 41,
			Fields: map[string]any{"id": int64(7), "at": at, "raw": []byte("hi"), "amount": "12.340", "tags": []any{"a"}, "gone": nil,
				"until": time.UnixMicro(math.MaxInt64)}}, // PostgreSQL's infinity, as package mapping gives it
		{Op: sink.OpDelete, Key: map[string]any{"id": int64(8)}, Topic: "wh.public.leads", Partition: 2, Offset: 42},
		{Op: sink.OpTruncate, Topic: "wh.public.leads", Partition: 2, Offset: 43},
	}}
	if err := apply(c, b); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for name, want := range map[string]string{"Content-Type": "application/json", "Authorization": "Bearer t0ken", "X-Tenant": "acme"} {
		if got := r.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if r.header.Get(IdempotencyKeyHeader) == "" || r.header.Get(SignatureHeader) != "" {
		t.Errorf("idempotency %q, signature %q", r.header.Get(IdempotencyKeyHeader), r.header.Get(SignatureHeader))
	}
	want := `{"sink":"crm","records":[` +
		`{"op":"upsert","key":{"id":7},"fields":{"amount":"12.340","at":"2024-05-01T10:00:00.000001Z","gone":null,"id":7,"raw":"aGk=","tags":["a"],"until":"infinity"},"topic":"wh.public.leads","partition":2,"offset":41,"idempotency_key":"wh.public.leads-2-41"},` +
		`{"op":"delete","key":{"id":8},"topic":"wh.public.leads","partition":2,"offset":42,"idempotency_key":"wh.public.leads-2-42"},` +
		`{"op":"truncate","topic":"wh.public.leads","partition":2,"offset":43,"idempotency_key":"wh.public.leads-2-43"}]}`
	if string(r.body) != want {
		t.Errorf("body\n got %s\nwant %s", r.body, want)
	}
}

func TestSignature(t *testing.T) {
	s := newServer(t, ok)
	c := open(t, s.URL, "secret", "sh4red")
	if err := apply(c, batch(3)); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	got := r.header.Get(SignatureHeader)
	if got != Sign([]byte("sh4red"), r.body) || !strings.HasPrefix(got, "sha256=") || len(got) != len("sha256=")+64 {
		t.Errorf("signature %q does not verify", got)
	}
	// Known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
	if got := Sign([]byte("key"), []byte("The quick brown fox jumps over the lazy dog")); got != "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("Sign known answer = %s", got)
	}
}

func TestIdempotencyKeyStableAcrossRetries(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, n int, _ Payload) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	c := open(t, s.URL)
	err := apply(c, batch(3))
	if !sink.IsRetryable(err) {
		t.Fatalf("503: want retryable, got %v", err)
	}
	if err := apply(c, batch(3)); err != nil {
		t.Fatal(err)
	}
	if err := apply(c, batch(2)); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	k0, k1, k2 := reqs[0].header.Get(IdempotencyKeyHeader), reqs[1].header.Get(IdempotencyKeyHeader), reqs[2].header.Get(IdempotencyKeyHeader)
	if k0 == "" || k0 != k1 {
		t.Errorf("retry changed the key: %q then %q", k0, k1)
	}
	if k2 == k0 {
		t.Errorf("other records got the same key %q", k2)
	}
}

func TestSplitAtMaxBatch(t *testing.T) {
	s := newServer(t, ok)
	c := open(t, s.URL, "max_batch", 2)
	if err := apply(c, batch(5)); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	var sizes []int
	var offsets []int64
	keys := map[string]bool{}
	for _, r := range reqs {
		sizes = append(sizes, len(r.pay.Records))
		for _, rec := range r.pay.Records {
			offsets = append(offsets, rec.Offset)
		}
		keys[r.header.Get(IdempotencyKeyHeader)] = true
	}
	if len(sizes) != 3 || sizes[0] != 2 || sizes[1] != 2 || sizes[2] != 1 {
		t.Errorf("request sizes %v, want [2 2 1]", sizes)
	}
	for i, o := range offsets {
		if o != int64(100+i) {
			t.Errorf("offsets %v not in order", offsets)
			break
		}
	}
	if len(keys) != 3 {
		t.Errorf("requests share idempotency keys: %v", keys)
	}
}

func TestDefaultMaxBatch(t *testing.T) {
	s := newServer(t, ok)
	c := open(t, s.URL)
	if err := apply(c, batch(1001)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.requests()); n != 3 {
		t.Errorf("1001 records in %d requests, want 3", n)
	}
}

func TestPerRecordResults(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, n int, p Payload) {
		switch n {
		case 0: // records 0, 1
			io.WriteString(w, `{"results":[{"index":0,"ok":true},{"index":1,"ok":false,"error":"bad email"}]}`)
		case 1: // records 2, 3
			io.WriteString(w, `{"results":[{"index":0,"ok":false,"error":"unknown owner"},{"index":1,"ok":true}]}`)
		default: // record 4
			io.WriteString(w, `{"results":[{"ok":true}]}`)
		}
	})
	c := open(t, s.URL, "max_batch", 2)
	err := apply(c, batch(5))
	assertRejected(t, err, map[int]string{1: "bad email", 2: "unknown owner"})
	if n := len(s.requests()); n != 3 {
		t.Errorf("%d requests, want 3: a partial failure must not stop the later requests", n)
	}
}

// assertRejected checks err is a non-retryable PartialError with these indexes and reasons.
func assertRejected(t *testing.T, err error, want map[int]string) {
	t.Helper()
	var pe *sink.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want *sink.PartialError, got %v", err)
	}
	if sink.IsRetryable(err) {
		t.Error("partial error marked retryable")
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

func TestMultiStatus(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, n int, _ Payload) {
		w.WriteHeader(http.StatusMultiStatus)
		io.WriteString(w, `{"failed":[{"index":2,"error":"duplicate"},{"index":0,"error":"invalid"}]}`)
	})
	c := open(t, s.URL)
	assertRejected(t, apply(c, batch(4)), map[int]string{0: "invalid", 2: "duplicate"})
}

func TestMultiStatusWithoutResults(t *testing.T) {
	s := newServer(t, status(http.StatusMultiStatus, `<multistatus/>`))
	err := apply(open(t, s.URL), batch(2))
	var pe *sink.PartialError
	if err == nil || errors.As(err, &pe) || !strings.Contains(err.Error(), "207") {
		t.Fatalf("want a plain error naming 207, got %v", err)
	}
}

func TestBadResultIndex(t *testing.T) {
	s := newServer(t, status(http.StatusOK, `{"failed":[{"index":5,"error":"x"}]}`))
	err := apply(open(t, s.URL), batch(2))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "index 5 of a 2-record request") {
		t.Fatalf("got %v", err)
	}
}

func TestRetryableRecordResult(t *testing.T) {
	s := newServer(t, status(http.StatusOK, `{"results":[{"index":0,"ok":false,"error":"locked","retryable":true}]}`))
	if err := apply(open(t, s.URL), batch(1)); !sink.IsRetryable(err) {
		t.Fatalf("want retryable, got %v", err)
	}
}

func TestPlain200BodyIgnored(t *testing.T) {
	s := newServer(t, status(http.StatusOK, `thanks`))
	if err := apply(open(t, s.URL), batch(2)); err != nil {
		t.Fatal(err)
	}
}

func TestTooManyRequests(t *testing.T) {
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		header   string
		min, max time.Duration
	}{
		{"7", 7 * time.Second, 7 * time.Second},
		{date, 28 * time.Second, 30 * time.Second},
		{"", 0, 0},
	} {
		s := newServer(t, func(w http.ResponseWriter, _ int, _ Payload) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.WriteHeader(http.StatusTooManyRequests)
		})
		err := apply(open(t, s.URL), batch(1))
		if !sink.IsRetryable(err) {
			t.Fatalf("Retry-After %q: want retryable, got %v", tc.header, err)
		}
		if d := sink.RetryDelay(err); d < tc.min || d > tc.max {
			t.Errorf("Retry-After %q: delay %v, want %v..%v", tc.header, d, tc.min, tc.max)
		}
	}
}

func TestRetryableStatuses(t *testing.T) {
	for _, code := range []int{408, 500, 502, 503, 504, 401, 403, 404} {
		s := newServer(t, status(code, "nope"))
		err := apply(open(t, s.URL), batch(1))
		if !sink.IsRetryable(err) {
			t.Errorf("%d: want retryable, got %v", code, err)
		}
	}
}

func TestClientErrorIsPermanent(t *testing.T) {
	long := `{"error":"field score must be < 1"}` + strings.Repeat("x", 300)
	for _, code := range []int{400, 413, 422} {
		s := newServer(t, status(code, long))
		err := apply(open(t, s.URL), batch(1))
		if err == nil || sink.IsRetryable(err) {
			t.Fatalf("%d: want a non-retryable error, got %v", code, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, http.StatusText(code)) || !strings.Contains(msg, long[:200]) || strings.Contains(msg, long[:201]) {
			t.Errorf("%d: message should hold the status and the first 200 bytes of the body: %s", code, msg)
		}
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, _ int, _ Payload) { <-release })
	defer close(release)
	c := open(t, s.URL, "timeout", "100ms")
	start := time.Now()
	err := apply(c, batch(1))
	if !sink.IsRetryable(err) {
		t.Fatalf("want retryable, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
}

func TestConnectionRefusedIsRetryableAndHidesCredentials(t *testing.T) {
	s := httptest.NewServer(http.NotFoundHandler())
	url := strings.Replace(s.URL, "http://", "http://user:pa55@", 1) + "/hook?token=t0k"
	s.Close()
	err := apply(open(t, url), batch(1))
	if !sink.IsRetryable(err) {
		t.Fatalf("want retryable, got %v", err)
	}
	if strings.Contains(err.Error(), "pa55") || strings.Contains(err.Error(), "t0k") {
		t.Errorf("error leaks credentials: %v", err)
	}
}

func TestUnencodableRecord(t *testing.T) {
	s := newServer(t, ok)
	b := batch(3)
	b.Records[1].Fields["score"] = math.NaN()
	assertRejected(t, apply(open(t, s.URL), b), map[int]string{1: "NaN"})
	if reqs := s.requests(); len(reqs) != 1 || len(reqs[0].pay.Records) != 2 {
		t.Errorf("the encodable records were not sent: %+v", reqs)
	}
}

func TestSoftDeleteSettingAccepted(t *testing.T) {
	_, err := New(context.Background(), sink.Params{Sink: "crm", Key: []string{"id"}, SoftDeleteColumn: "deleted",
		With: map[string]any{"url": "http://h", "soft_delete_column": "deleted"}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRedirects(t *testing.T) {
	target := newServer(t, ok)
	var same *server
	same = newServer(t, func(w http.ResponseWriter, n int, _ Payload) {
		if n == 0 {
			w.Header().Set("Location", same.URL+"/moved")
			w.WriteHeader(http.StatusPermanentRedirect)
		}
	})
	if err := apply(open(t, same.URL+"/hook", "secret", "s"), batch(1)); err != nil || len(same.requests()) != 2 {
		t.Fatalf("308 within the origin not followed: %v", err)
	}
	if r := same.requests(); string(r[1].body) != string(r[0].body) || r[1].header.Get(WebhookSignatureHeader) == "" {
		t.Fatal("the redirected request lost its body or signature")
	}

	// To another port of the same host: refused, retried, and nothing reaches the other port.
	for _, code := range []int{http.StatusPermanentRedirect, http.StatusTemporaryRedirect, http.StatusFound} {
		moved := newServer(t, func(w http.ResponseWriter, _ int, _ Payload) {
			w.Header().Set("Location", target.URL+"/hook?token=t0p")
			w.WriteHeader(code)
		})
		err := apply(open(t, moved.URL, "headers", map[string]any{"Authorization": "Bearer t0ken"}), batch(1))
		if !sink.IsRetryable(err) || !strings.Contains(err.Error(), "not followed") || strings.Contains(err.Error(), "t0p") {
			t.Fatalf("%d to another origin: want a retryable error saying it was not followed, got %v", code, err)
		}
	}
	if n := len(target.requests()); n != 0 {
		t.Fatalf("%d requests reached another origin through a redirect", n)
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"http://Example.com/a", "http://example.com:80/b?x", true},
		{"https://example.com/a", "https://example.com:443/b", true},
		{"https://example.com/a", "http://example.com/a", false},
		{"https://example.com/a", "https://example.com:8443/a", false},
		{"https://example.com/a", "https://example.com.evil.test/a", false},
		{"http://[::1]:8080/a", "http://[::1]:8080/b", true},
	} {
		a, _ := url.Parse(tc.a)
		b, _ := url.Parse(tc.b)
		if got := origin(a) == origin(b); got != tc.same {
			t.Errorf("%s and %s: same origin %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// verifyStandard checks a request's Standard Webhooks headers the way a receiver does: the
// signature over id.timestamp.body, the timestamp within tolerance of the receiver's clock.
func verifyStandard(t *testing.T, r received, secret string, tolerance time.Duration) {
	t.Helper()
	key, err := StandardKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	id, ts := r.header.Get("webhook-id"), r.header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || id != r.header.Get(IdempotencyKeyHeader) {
		t.Fatalf("webhook-id %q (Idempotency-Key %q), webhook-timestamp %q", id, r.header.Get(IdempotencyKeyHeader), ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		t.Fatalf("webhook-timestamp %s is %s from now", ts, d)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return
		}
	}
	t.Fatalf("webhook-signature %q does not verify", r.header.Get("webhook-signature"))
}

func TestStandardWebhooksSignature(t *testing.T) {
	// The Standard Webhooks specification's example.
	key, err := StandardKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	if got := SignStandard(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)); got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Errorf("known answer: %s", got)
	}
	for _, secret := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain-shared-secret"} {
		s := newServer(t, ok)
		if err := apply(open(t, s.URL, "secret", secret), batch(2)); err != nil {
			t.Fatal(err)
		}
		r := s.requests()[0]
		verifyStandard(t, r, secret, 5*time.Minute)
		if got := r.header.Get(SignatureHeader); got != Sign([]byte(secret), r.body) {
			t.Errorf("%s compatibility signature %q", SignatureHeader, got)
		}
	}
	s := newServer(t, ok)
	if err := apply(open(t, s.URL), batch(1)); err != nil {
		t.Fatal(err)
	}
	if r := s.requests()[0]; r.header.Get("webhook-id") == "" || r.header.Get("webhook-timestamp") == "" || r.header.Get("webhook-signature") != "" {
		t.Errorf("unsigned: webhook-id %q, timestamp %q, signature %q", r.header.Get("webhook-id"), r.header.Get("webhook-timestamp"), r.header.Get("webhook-signature"))
	}
	if _, err := New(context.Background(), sink.Params{Sink: "crm", With: map[string]any{"url": s.URL, "secret": "whsec_not base64!"}}); err == nil ||
		!strings.Contains(err.Error(), "with.secret") || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("a whsec_ secret that is not base64: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		with map[string]any
		want string
	}{
		{"no url", map[string]any{}, "with.url: required"},
		{"scheme", map[string]any{"url": "ftp://h/x"}, "with.url: scheme \"ftp\""},
		{"no host", map[string]any{"url": "http:///x"}, "with.url: no host"},
		{"bad url", map[string]any{"url": "http://u:s3cr3t@h:x y/"}, "with.url: not a valid URL"},
		{"headers type", map[string]any{"url": "http://h", "headers": "Authorization: x"}, "with.headers: expected a map"},
		{"header value", map[string]any{"url": "http://h", "headers": map[string]any{"X-N": 5}}, "with.headers.X-N: expected a string"},
		{"header name", map[string]any{"url": "http://h", "headers": map[string]any{"Bad Name": "v"}}, `with.headers["Bad Name"]: not a valid header name`},
		{"header newline", map[string]any{"url": "http://h", "headers": map[string]any{"X-A": "a\r\nX-B: b"}}, "with.headers.X-A: value contains a line break"},
		{"reserved header", map[string]any{"url": "http://h", "headers": map[string]any{"idempotency-key": "k"}}, "with.headers.idempotency-key: set by the connector"},
		{"secret", map[string]any{"url": "http://h", "secret": 42}, "with.secret: expected a string"},
		{"timeout", map[string]any{"url": "http://h", "timeout": "fast"}, "with.timeout: expected a duration"},
		{"timeout number", map[string]any{"url": "http://h", "timeout": 10}, "with.timeout: 10 is not a duration"},
		{"timeout zero", map[string]any{"url": "http://h", "timeout": "0s"}, "with.timeout: 0s must be positive"},
		{"max_batch", map[string]any{"url": "http://h", "max_batch": 0}, "with.max_batch: 0 is not a positive integer"},
		{"max_batch text", map[string]any{"url": "http://h", "max_batch": "many"}, "with.max_batch: many is not"},
		{"unknown", map[string]any{"url": "http://h", "header": map[string]any{}}, "with.header: unknown setting"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), sink.Params{Sink: "s", With: tc.with})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestSettingsAccepted(t *testing.T) {
	c, err := New(context.Background(), sink.Params{Sink: "s", With: map[string]any{
		"url": "https://hooks.example.com/x", "timeout": "3s", "max_batch": uint64(50), "secret": "k",
		"headers": map[string]string{"authorization": "Bearer x"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.(*connector).cfg
	if cfg.timeout != 3*time.Second || cfg.maxBatch != 50 || string(cfg.secret) != "k" || cfg.headers.Get("Authorization") != "Bearer x" {
		t.Errorf("config %+v", cfg)
	}
	d, _ := New(context.Background(), sink.Params{Sink: "s", With: map[string]any{"url": "http://h"}})
	if cfg := d.(*connector).cfg; cfg.timeout != DefaultTimeout || cfg.maxBatch != DefaultMaxBatch {
		t.Errorf("defaults %+v", cfg)
	}
}
