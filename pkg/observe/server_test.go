package observe

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startServer starts a server on a free loopback port and shuts it down after the test.
func startServer(t *testing.T, m *Metrics, status StatusFunc, opts ...ServerOpt) (*Server, string) {
	t.Helper()
	s := NewServer("127.0.0.1:0", m, status, nil, opts...)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // test
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServerHealthAndMetrics(t *testing.T) {
	m := NewMetrics()
	_, base := startServer(t, m, nil)
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %q", code, body)
	}
	m.CaptureChange("public.w", "c", 3*time.Millisecond)
	m.Batch("crm", 7, 1, 2, 10*time.Millisecond, []time.Time{time.Now().Add(-time.Second)})
	code, body := get(t, base+"/metrics")
	for _, want := range []string{
		`backflow_capture_changes_total{op="c",table="public.w"} 1`,
		`backflow_sink_records_applied_total{sink="crm"} 7`,
		`backflow_sink_dlq_records_total{sink="crm"} 2`,
		`backflow_e2e_latency_seconds_count{sink="crm"} 1`,
		"go_goroutines",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if code, _ := get(t, base+"/status.json"); code != http.StatusNotFound {
		t.Errorf("/status.json without a status func = %d, want 404", code)
	}
	if code, _ := get(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

func TestServerReadiness(t *testing.T) {
	m := NewMetrics()
	_, base := startServer(t, m, nil, WithComponents(ComponentCapture, SinkComponent("crm")), WithStaleAfter(300*time.Millisecond))
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"capture"`) || !strings.Contains(body, `"sink/crm"`) {
		t.Fatalf("/readyz before progress = %d %s, want 503 naming both components", code, body)
	}
	m.Progress(ComponentCapture)
	m.Progress(SinkComponent("crm"))
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after progress = %d %s", code, body)
	}
	// The sink stalls while the capture keeps making progress.
	time.Sleep(400 * time.Millisecond)
	m.Progress(ComponentCapture)
	code, body = get(t, base+"/readyz")
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a stalled sink = %d %s (%v)", code, body, err)
	}
	if r.Ready || len(r.Stale) != 1 || r.Stale[0] != "sink/crm" || !r.Components["capture"].Ready {
		t.Fatalf("readiness %+v, want only sink/crm stale", r)
	}
}

func TestServerStatusCachedWithLastApplied(t *testing.T) {
	m := NewMetrics()
	var calls atomic.Int32
	status := func(context.Context) (*Status, error) {
		calls.Add(1)
		st := healthyStatus()
		st.Evaluate(DefaultThresholds())
		return st, nil
	}
	s, base := startServer(t, m, status, WithComponents(SinkComponent("crm")), WithSampleEvery(time.Hour))
	m.Batch("crm", 3, 0, 0, time.Millisecond, nil)
	s.History().Sample(time.Now())
	var st Status
	for range 3 {
		code, body := get(t, base+"/status.json")
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
			t.Fatalf("/status.json = %d %s (%v)", code, body, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("status collected %d times for 3 requests within the TTL, want 1", n)
	}
	if !st.Healthy || len(st.Sinks) != 1 || st.Sinks[0].LastApplied == nil {
		t.Fatalf("status %+v: want healthy with crm's last applied time", st)
	}
	if age := time.Since(*st.Sinks[0].LastApplied); age < 0 || age > time.Minute {
		t.Errorf("last applied %v ago", age)
	}
}

func TestHistoryRates(t *testing.T) {
	m := NewMetrics()
	h := NewHistory(m, 3, ComponentCapture, SinkComponent("idle"))
	t0 := time.Unix(1000, 0)
	h.Sample(t0)
	for range 10 {
		m.CaptureChange("public.w", "c", time.Millisecond)
	}
	m.SlotLag("backflow", 4096)
	m.Batch("crm", 20, 0, 3, time.Millisecond, nil)
	m.ConsumerLag("crm", "t", 0, 5)
	m.ConsumerLag("crm", "t", 1, 7)
	h.Sample(t0.Add(2 * time.Second))
	s := h.Samples()
	if len(s) != 2 {
		t.Fatalf("%d samples, want 2", len(s))
	}
	got := s[1]
	if got.Time != t0.Add(2*time.Second).UnixMilli() || got.Capture == nil || got.Capture.ChangesPerSec != 5 || got.Capture.SlotLagBytes != 4096 {
		t.Errorf("capture sample %+v %+v", got, got.Capture)
	}
	if crm := got.Sinks["crm"]; crm.AppliedPerSec != 10 || crm.Lag != 12 || crm.DLQ != 3 {
		t.Errorf("crm sample %+v, want 10/s, lag 12, dlq 3", crm)
	}
	if _, ok := got.Sinks["idle"]; !ok {
		t.Errorf("configured sink missing before it records: %+v", got.Sinks)
	}
	if _, ok := h.LastApplied("crm"); !ok {
		t.Error("no last applied time for crm")
	}
	if _, ok := h.LastApplied("idle"); ok {
		t.Error("idle sink has a last applied time")
	}
	h.Sample(t0.Add(4 * time.Second))
	h.Sample(t0.Add(6 * time.Second))
	if s := h.Samples(); len(s) != 3 || s[0].Time != t0.Add(2*time.Second).UnixMilli() {
		t.Errorf("kept %d samples from %d, want the last 3", len(s), s[0].Time)
	}
	if rate := h.Samples()[2].Sinks["crm"].AppliedPerSec; rate != 0 {
		t.Errorf("applied rate with no new records = %v", rate)
	}
}

func TestServerHistoryJSON(t *testing.T) {
	m := NewMetrics()
	_, base := startServer(t, m, nil, WithComponents(SinkComponent("crm")), WithSampleEvery(20*time.Millisecond), WithHistoryWindow(time.Second))
	m.Batch("crm", 5, 0, 0, time.Millisecond, nil)
	time.Sleep(200 * time.Millisecond)
	code, body := get(t, base+"/history.json")
	var h HistoryResponse
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 {
		t.Fatalf("/history.json = %d %s (%v)", code, body, err)
	}
	if h.EverySeconds != 0.02 || h.WindowSeconds != 1 || len(h.Samples) < 3 || len(h.Samples) > 50 {
		t.Fatalf("history every %v window %v with %d samples", h.EverySeconds, h.WindowSeconds, len(h.Samples))
	}
	if _, ok := h.Samples[len(h.Samples)-1].Sinks["crm"]; !ok {
		t.Errorf("last sample lacks crm: %+v", h.Samples[len(h.Samples)-1])
	}
}

// The page is one self-contained document: no scripts, styles, fonts or images from elsewhere.
func TestStatusPageSelfContained(t *testing.T) {
	_, base := startServer(t, NewMetrics(), nil)
	code, body := get(t, base+"/")
	if code != 200 || !strings.HasPrefix(body, "<!DOCTYPE html>") {
		t.Fatalf("/ = %d, want the status page", code)
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//|<link`)
	if loc := external.FindStringIndex(body); loc != nil {
		t.Errorf("status page refers to an external asset: %q", body[max(loc[0]-40, 0):min(loc[1]+40, len(body))])
	}
	for _, want := range []string{"status.json", "history.json", "Consumer lag", "Throughput", "Dead letters"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}

func TestServerShutdown(t *testing.T) {
	s := NewServer("127.0.0.1:0", nil, nil, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil { //nolint:noctx // test
		t.Error("server still answers after Shutdown")
	}
	// The busy address is held by the test's own listener: re-binding the port just
	// released would race every other process on the machine for it.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held := busy.Addr().String()
	if err := NewServer(held, nil, nil, nil).Start(); err == nil || !strings.Contains(err.Error(), held) {
		t.Errorf("Start on a busy address = %v, want an error naming it", err)
	}
}

// A sink waiting for records makes no progress: it is ready while Kafka shows nothing waiting.
func TestServerReadinessIdleSink(t *testing.T) {
	m := NewMetrics()
	var lag atomic.Int64
	status := func(context.Context) (*Status, error) {
		st := healthyStatus()
		st.Sinks[0].Lag = lag.Load()
		return st, nil
	}
	s, base := startServer(t, m, status, WithComponents(ComponentCapture, SinkComponent("crm")))
	m.Progress(ComponentCapture)
	code, body := get(t, base+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "idle: no records waiting") {
		t.Fatalf("/readyz with an idle sink = %d %s", code, body)
	}
	lag.Store(7)
	s.cacheMu.Lock()
	s.cached = nil // as if the TTL had passed
	s.cacheMu.Unlock()
	code, body = get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "7 records waiting") || !strings.Contains(body, `"sink/crm"`) {
		t.Fatalf("/readyz with a stalled sink behind = %d %s", code, body)
	}
}

func TestServerTokenGuardsEverythingButProbes(t *testing.T) {
	const token = "t0ken-for-the-listener"
	status := func(context.Context) (*Status, error) { return healthyStatus(), nil }
	_, base := startServer(t, NewMetrics(), status, WithToken(token), WithSampleEvery(time.Hour))
	do := func(path string, auth func(*http.Request)) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil) //nolint:noctx // test
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := do(path, nil); code == http.StatusUnauthorized {
			t.Errorf("%s wants the token; probes cannot send it", path)
		}
	}
	for _, path := range []string{"/metrics", "/status.json", "/history.json", "/"} {
		code, h := do(path, nil)
		if code != http.StatusUnauthorized || len(h.Values("WWW-Authenticate")) == 0 {
			t.Errorf("%s without the token = %d (WWW-Authenticate %q), want 401 with a challenge", path, code, h.Values("WWW-Authenticate"))
		}
		for name, auth := range map[string]func(*http.Request){
			"a wrong token":    bearer(token + "x"),
			"a prefix of it":   bearer(token[:5]),
			"a wrong password": func(r *http.Request) { r.SetBasicAuth("any", "nope") },
		} {
			if code, _ := do(path, auth); code != http.StatusUnauthorized {
				t.Errorf("%s with %s = %d, want 401", path, name, code)
			}
		}
		for name, auth := range map[string]func(*http.Request){
			"the bearer token":           bearer(token),
			"basic with it for password": func(r *http.Request) { r.SetBasicAuth("any", token) },
		} {
			if code, _ := do(path, auth); code != http.StatusOK {
				t.Errorf("%s with %s = %d, want 200", path, name, code)
			}
		}
	}
}

func TestServerHasTimeouts(t *testing.T) {
	s := NewServer("127.0.0.1:0", nil, nil, nil)
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 {
		t.Fatalf("timeouts: read header %s, read %s, write %s, idle %s; want all set",
			s.srv.ReadHeaderTimeout, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout)
	}
	// A client that opens a connection and sends nothing is dropped (here after a shortened
	// read header timeout), rather than holding the connection for ever.
	s.srv.ReadHeaderTimeout = 200 * time.Millisecond
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the silent connection was not closed by the server: %v", err)
	}
}

// A capture process whose spill_dir failed says so in /status.json, as a problem too: status
// has no other way to know.
func TestServerStatusSpillFailed(t *testing.T) {
	m := NewMetrics()
	status := func(context.Context) (*Status, error) {
		st := healthyStatus()
		st.Evaluate(DefaultThresholds())
		return st, nil
	}
	_, base := startServer(t, m, status)
	m.SpillFailed("write spill file /spill/7.spill: no space left on device")
	var st Status
	code, body := get(t, base+"/status.json")
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("/status.json = %d %s (%v)", code, body, err)
	}
	if st.Healthy || st.Capture.SpillFailed == "" || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "no space left") {
		t.Fatalf("status healthy=%v spill_failed=%q problems=%q: want the failure as the one problem", st.Healthy, st.Capture.SpillFailed, st.Problems)
	}
}
