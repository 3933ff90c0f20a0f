package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// chromium returns Debian's chromium, failing (not skipping) when it is missing: the status page
// must be seen rendered.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed; the status page test needs Debian's chromium package: " +
		"run `apt-get update && apt-get install -y chromium` (`make test` checks for it first: .ci/prereq)")
	return ""
}

// headless runs chromium on url with the extra flag (--screenshot=… or --dump-dom) and returns
// its stdout.
func headless(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900", "--virtual-time-budget=5000"}, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return stdout.String()
}

// statusPagePipeline is a `backflow run` on the embedded broker with a PostgreSQL sink whose
// target rejects negative values (they go to the dead-letter topic), and the HTTP listener on.
func statusPagePipeline(t *testing.T) (bin, cfg, base string, src, dst *testenv.Postgres) {
	t.Helper()
	bin, src, dst = buildBinary(t), testenv.NewPostgres(t), testenv.NewPostgres(t)
	ctx := context.Background()
	if err := src.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := dst.Exec(ctx, targetDDL); err != nil {
		t.Fatal(err)
	}
	cfg = writeConfig(t, fmt.Sprintf(`source:
  postgres: {url: "%s", tables: [public.w], status_interval: 500ms, heartbeat_interval: 1s}
kafka: {topic_prefix: wh, embedded_port: %d, topics: {partitions: 4}}
data_dir: %s
log: {format: json, level: warn}
sinks:
  - name: w-copy
    from: [public.w]
    connector: postgres
    with: {url: "%s", table: public.w_copy}
    key: [id]
    map: {id: after.id, v: after.v}
    batch: {max_records: 500, max_wait: 20ms}
`, src.URL("postgres"), freePort(t), filepath.Join(t.TempDir(), "data"), dst.URL("postgres")))
	return bin, cfg, withHTTP(t, cfg), src, dst
}

// writeWaves inserts rows in waves of growing size, two and a half seconds apart, so the charts
// have a shape; wave 4 holds 25 negative values for the dead-letter topic. It returns the number
// of rows the target accepts.
func writeWaves(t *testing.T, src *testenv.Postgres) int {
	t.Helper()
	id, good := 0, 0
	for wave := 1; wave <= 8; wave++ {
		n := wave * 400
		neg := 0
		if wave == 4 {
			neg = 25
		}
		q := fmt.Sprintf(`INSERT INTO public.w SELECT g, CASE WHEN g - %d <= %d THEN -g ELSE g END FROM generate_series(%d, %d) g`,
			id, neg, id+1, id+n)
		if err := src.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		id, good = id+n, good+n-neg
		time.Sleep(2500 * time.Millisecond)
	}
	return good
}

func waitTargetRows(t *testing.T, dst *testenv.Postgres, want int, p *process) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got := rows(t, dst, "SELECT count(*) FROM public.w_copy")
		if got[0] == strconv.Itoa(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target has %s rows, want %d; log:\n%s", got[0], want, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStatusPageInChromium runs `backflow run` on the embedded broker with http.listen, writes
// rows in waves (some rejected into the dead-letter topic), checks `backflow status` against the
// embedded broker, then renders the status page in headless Chromium: the DOM holds the sink and
// charts with data points, and the screenshot is a real PNG of the page.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	bin, cfg, base, src, dst := statusPagePipeline(t)
	p := startProcess(t, bin, "run", "-c", cfg)
	waitHTTP(t, base+"/readyz", 200, p)
	waitTargetRows(t, dst, writeWaves(t, src), p)

	out, stderr, code := statusCLI(t, bin, "-c", cfg)
	if code != 0 || !strings.Contains(out, "w-copy") || !regexp.MustCompile(`w-copy\s+w-copy\s+\S+\s+1\s+0\s+25\s+20`).MatchString(out) {
		t.Errorf("status against the embedded broker: exit %d, want 0 with w-copy: 1 member, lag 0, 25 dead letters, a last applied time\n%s%s", code, out, stderr)
	}
	t.Logf("backflow status:\n%s", out)

	dom := headless(t, browser, base+"/", "--dump-dom")
	checkStatusDOM(t, dom)
	shot := filepath.Join(t.TempDir(), "status.png")
	headless(t, browser, base+"/", "--screenshot="+shot)
	checkScreenshot(t, shot)
	if dir := os.Getenv("BACKFLOW_SCREENSHOT_DIR"); dir != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile(filepath.Join(dir, "status-page.png"), b, 0o644); err != nil {
			t.Error(err)
		}
	}
}

var seriesPoints = regexp.MustCompile(`<polyline[^>]*data-series="([^"]+)"[^>]*data-points="(\d+)"`)

func checkStatusDOM(t *testing.T, dom string) {
	t.Helper()
	for _, want := range []string{`<tr data-sink="w-copy">`, `id="badge" class="ok">Healthy`, "backflow", "reserved"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	series := map[string]int{}
	for _, m := range seriesPoints.FindAllStringSubmatch(dom, -1) {
		n, _ := strconv.Atoi(m[2])
		series[m[1]] = max(series[m[1]], n)
	}
	if series["w-copy"] < 5 || series["capture"] < 5 {
		t.Errorf("charts have too few data points: %v; DOM:\n%s", series, dom)
	}
	if !regexp.MustCompile(`data-chart="chart-dlq" data-points="\d+"`).MatchString(dom) {
		t.Errorf("no dead-letter chart in the DOM")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

// checkScreenshot checks the file is a 1280×900 PNG with enough colours to be a rendered page.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if img.Bounds() != image.Rect(0, 0, 1280, 900) || len(b) < 20_000 {
		t.Errorf("screenshot %v, %d bytes: want 1280×900 and more than 20 kB", img.Bounds(), len(b))
	}
	colours := map[[3]uint32]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours: not a rendered page", len(colours))
	}
	t.Logf("screenshot %s: %d bytes, %d colours", path, len(b), len(colours))
}
