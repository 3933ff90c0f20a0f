package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// withHTTP adds an http.listen on a free loopback port to the pipeline file and returns the
// listener's base URL.
func withHTTP(t *testing.T, config string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "http: {listen: %q}\n", addr); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// httpGet returns the status code and body of url, or code 0 when nothing answers.
func httpGet(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTP waits until url answers with code, failing with the process log.
func waitHTTP(t *testing.T, url string, code int, p *process) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, body := httpGet(url)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answered %d %s, want %d; log:\n%s", url, got, body, code, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrape reads /metrics into "name{labels}" → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := httpGet(base + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// waitMetric waits until the scraped metric reaches want and fails when it passes it or never
// gets there.
func waitMetric(t *testing.T, base, key string, want float64, p *process) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := scrape(t, base)
		switch got := m[key]; {
		case got == want:
			return m
		case got > want:
			t.Fatalf("%s = %v, want exactly %v", key, got, want)
		case time.Now().After(deadline):
			t.Fatalf("%s = %v after 2 minutes, want %v; log:\n%s", key, got, want, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const (
	mInserts = `backflow_capture_changes_total{op="c",table="public.w"}`
	mUpdates = `backflow_capture_changes_total{op="u",table="public.w"}`
	mApplied = `backflow_sink_records_applied_total{sink="w-copy"}`
	mE2E     = `backflow_e2e_latency_seconds_count{sink="w-copy"}`
)

// TestMetricsMoveAsDataFlows runs `backflow run` with http.listen, writes rows and scrapes
// /metrics over HTTP: changes captured, records applied and end-to-end latencies move by exactly
// what was written; /healthz, /readyz and /status.json answer while data flows.
func TestMetricsMoveAsDataFlows(t *testing.T) {
	e := newE2E(t)
	base := withHTTP(t, e.config)
	p := e.start("run")
	waitHTTP(t, base+"/healthz", http.StatusOK, p)
	waitHTTP(t, base+"/readyz", http.StatusOK, p)
	before := scrape(t, base)
	if before[mInserts] != 0 || before[mApplied] != 0 {
		t.Fatalf("counters before any write: inserts %v applied %v", before[mInserts], before[mApplied])
	}
	ctx := context.Background()
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 300) g`); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, base, mInserts, 300, p)
	m := waitMetric(t, base, mApplied, 300, p)
	if m[mE2E] < 300 {
		t.Errorf("%s = %v, want a latency observed per applied record (300)", mE2E, m[mE2E])
	}
	if err := e.src.Exec(ctx, `UPDATE public.w SET v = v + 1 WHERE id <= 200`); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, base, mUpdates, 200, p)
	m = waitMetric(t, base, mApplied, 500, p)
	if m[mInserts] != 300 || m[mE2E] < 500 {
		t.Errorf("after the updates: inserts %v (want 300), e2e count %v (want ≥ 500)", m[mInserts], m[mE2E])
	}
	for _, key := range []string{`backflow_capture_slot_lag_bytes{slot="backflow"}`, `backflow_sink_apply_latency_seconds_count{sink="w-copy"}`} {
		if _, ok := m[key]; !ok {
			t.Errorf("/metrics lacks %s", key)
		}
	}
	checkFlowingEndpoints(t, base)
	// SIGTERM: a clean exit, and the listener goes away with the process.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.tail())
	}
	if code, _ := httpGet(base + "/healthz"); code != 0 {
		t.Errorf("/healthz answers %d after the process stopped", code)
	}
}

func checkFlowingEndpoints(t *testing.T, base string) {
	t.Helper()
	if code, body := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	code, body := httpGet(base + "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"capture"`) || !strings.Contains(body, `"sink/w-copy"`) {
		t.Errorf("/readyz while flowing = %d %s", code, body)
	}
	// The status is collected at most every few seconds: one taken before the sink's group
	// formed may still be served for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = httpGet(base + "/status.json")
		var st observe.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
			t.Fatalf("/status.json = %d %s (%v)", code, body, err)
		}
		if st.Healthy && len(st.Sinks) == 1 && st.Sinks[0].Name == "w-copy" && st.Sinks[0].LastApplied != nil && st.Capture.Active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status.json %s: want healthy, an active slot, w-copy with a last applied time", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// statusCLI runs `backflow status` and returns its stdout, stderr and exit code.
func statusCLI(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"status"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("backflow status %v took %v", args, took)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run backflow status: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// TestStatusHealthyLaggingBroken runs capture and sink as separate processes and checks
// `backflow status` output and exit code when all is well (0), when the sink is stopped while
// rows are written (1, naming the sink and its lag), when the warehouse is down (1, saying so),
// and for bad usage or config (2).
func TestStatusHealthyLaggingBroken(t *testing.T) {
	e := newE2E(t)
	capt, snk := e.start("capture"), e.start("sink")
	ctx := context.Background()
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	checkHealthyStatus(t, e)

	snk.kill(t)
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(101, 150) g`); err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, e.src, "backflow", currentLSN(t, e.src), capt)
	out, stderr, code := statusCLI(t, e.bin, "-c", e.config, "--max-lag", "10")
	if code != 1 || !strings.Contains(out, "UNHEALTHY") || !strings.Contains(out, "sink w-copy: lag 50 records is above --max-lag 10") ||
		!strings.Contains(stderr, "unhealthy") {
		t.Errorf("lagging: exit %d, want 1 naming w-copy's lag of 50\n%s\n%s", code, out, stderr)
	}
	t.Logf("lagging pipeline:\n%s", out)

	if err := e.src.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = statusCLI(t, e.bin, "-c", e.config)
	if code != 1 || !strings.Contains(out, `database: cannot read replication slot "backflow"`) || !strings.Contains(out, "connect") {
		t.Errorf("database down: exit %d, want 1 saying the database cannot be reached\n%s\n%s", code, out, stderr)
	}
	t.Logf("broken pipeline:\n%s", out)
	checkStatusUsage(t, e)
}

func checkHealthyStatus(t *testing.T, e *e2e) {
	t.Helper()
	out, stderr, code := statusCLI(t, e.bin, "-c", e.config)
	for _, want := range []string{"HEALTHY", "backflow", "w-copy", "wh.public.w", "p0:0"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("healthy: exit %d, output lacks %q or is not 0\n%s\n%s", code, want, out, stderr)
		}
	}
	t.Logf("healthy pipeline:\n%s", out)
	out, _, code = statusCLI(t, e.bin, "-c", e.config, "--json")
	var st observe.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	s := st.Sinks[0]
	if !st.Healthy || !st.Capture.Exists || s.Name != "w-copy" || len(s.Members) != 1 || s.Lag != 0 || s.DLQDepth != 0 || len(s.Topics) != 1 {
		t.Errorf("--json status %s", out)
	}
}

func checkStatusUsage(t *testing.T, e *e2e) {
	t.Helper()
	bad := writeConfig(t, "source: {postgres: {tables: [public.w]}}\nhttp: {listen: nowhere}\n")
	for _, args := range [][]string{
		{"-c", bad},
		{"-c", e.config + ".missing"},
		{"-c", e.config, "--max-lag", "-1"},
		{"-c", e.config, "--bogus"},
		{"-c", e.config, "extra-arg"},
	} {
		out, stderr, code := statusCLI(t, e.bin, args...)
		if code != 2 {
			t.Errorf("status %v: exit %d, want 2\n%s%s", args, code, out, stderr)
		}
	}
	_, stderr, _ := statusCLI(t, e.bin, "-c", bad)
	if !strings.Contains(stderr, "http.listen") || !strings.Contains(stderr, "source.postgres.url") {
		t.Errorf("bad config errors do not name the fields:\n%s", stderr)
	}
}
