package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestValidateCommand checks exit codes and that every config problem is printed with its file,
// line and YAML path.
func TestValidateCommand(t *testing.T) {
	bin := buildBinary(t)
	valid := `source:
  postgres: {url: "postgres://u:pw@localhost/db", tables: [public.inventory]}
kafka: {topic_prefix: wh}
`
	invalid := `source:
  postgres:
    url: "postgres://u:hunter2@localhost/db"
    tables: [inventory]
    snapshot: sometimes
kafka:
  format: protobuf
  topics: {partitions: 0}
`
	cases := []struct {
		name     string
		args     []string
		file     string
		wantCode int
		want     []string
		never    []string
	}{
		{"valid", []string{"validate"}, valid, 0, []string{"pipeline is valid"}, nil},
		{"all problems at once", []string{"validate"}, invalid, 2, []string{
			":4: source.postgres.tables[0]", ":5: source.postgres.snapshot", ":7: kafka.format", ":8: kafka.topics.partitions",
		}, []string{"hunter2"}},
		{"bad mapping", []string{"validate"}, valid + `sinks:
  - name: s
    from: [public.inventory]
    connector: postgres
    with: {url: "postgres://localhost/t", table: t}
    key: [sku]
    map: {sku: after.sku, n: afterr.qty +}
    filter: after.qty
`, 2, []string{"sinks[0].map.n", "(sink s)"}, nil},
		{"missing file", []string{"validate", "-c", "/nonexistent.yaml"}, "", 2, []string{"nonexistent.yaml"}, nil},
		{"unknown flag", []string{"validate", "--bogus"}, valid, 2, []string{"bogus"}, nil},
		{"unknown command", []string{"frobnicate"}, valid, 2, []string{"frobnicate"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" && !strings.Contains(strings.Join(args, " "), "-c") {
				args = append(args, "-c", writeConfig(t, tc.file))
			}
			out, code := runBinary(t, bin, nil, args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(out, n) {
					t.Errorf("output leaks %q:\n%s", n, out)
				}
			}
		})
	}
}

// runBinaryLimit bounds a command runBinary runs.
const runBinaryLimit = 4 * time.Minute

// runBinary runs bin with args and returns its output (stdout and stderr) and exit code.
func runBinary(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	// A command that hangs is stopped with SIGQUIT, whose goroutine dump then shows in the
	// failure, rather than holding the test until the package's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), runBinaryLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return string(out), 0
}

// TestEmbeddedBrokerRestartLosesNothing runs `backflow run` without kafka.brokers (embedded
// broker with its log on disk), kills it with SIGKILL after its slot confirmed some changes, starts
// it again, and finds every change on the embedded broker's topic.
func TestEmbeddedBrokerRestartLosesNothing(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`source:
  postgres: {url: "%s", tables: [public.w], status_interval: 200ms}
kafka: {topic_prefix: wh, embedded_port: %d, topics: {partitions: 2}}
data_dir: %s
log: {format: console, level: info}
`, pg.URL("postgres"), port, filepath.Join(t.TempDir(), "data")))
	brokers := []string{fmt.Sprintf("127.0.0.1:%d", port)}

	p := startProcess(t, bin, "run", "-c", cfg)
	if err := pg.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, pg, "backflow", currentLSN(t, pg), p)
	if !strings.Contains(p.tail(), "embedded Kafka broker started") {
		t.Errorf("startup does not say the embedded broker is in use:\n%s", p.tail())
	}
	p.kill(t)

	p = startProcess(t, bin, "run", "-c", cfg)
	if err := pg.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1001, 2000) g`); err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, pg, "backflow", currentLSN(t, pg), p)
	ids := map[int32]bool{}
	for _, r := range readTopic(t, brokers, "wh", "wh.public.w") {
		ids[r.ev.After["id"].(int32)] = true
	}
	if len(ids) != 2000 {
		t.Fatalf("%d of 2000 rows on the embedded broker after a restart; log:\n%s", len(ids), p.tail())
	}
	// A clean stop on SIGTERM exits 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.tail())
	}
}

// TestSecretsNeverLogged runs capture at debug level with a password in the warehouse URL and
// checks that the password appears nowhere in its output.
func TestSecretsNeverLogged(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const secret = "Sup3rS3cretPw"
	url := strings.Replace(pg.URL("postgres"), "postgres@", "postgres:"+secret+"@", 1)
	cfg := writeConfig(t, pipelineYAML("${WAREHOUSE_URL}", kf.Brokers(), "")+"")
	cfgBody, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(cfgBody), "level: warn", "level: debug", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "capture", "-c", cfg)
	cmd.Env = append(os.Environ(), "WAREHOUSE_URL="+url)
	logf := filepath.Join(t.TempDir(), "out.log")
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, log: logf}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait(); f.Close() })
	if err := pg.Exec(ctx, `INSERT INTO public.w VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 1, p)
	// An unreachable warehouse makes capture log the URL in its retry errors too.
	kf.Stop()
	time.Sleep(2 * time.Second)
	out, _ := os.ReadFile(logf)
	if strings.Contains(string(out), secret) {
		t.Fatalf("the warehouse password appears in the log:\n%s", out)
	}
	if !strings.Contains(string(out), "xxxxx") {
		t.Errorf("the log never shows the redacted warehouse URL:\n%s", out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
