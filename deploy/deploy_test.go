package deploy_test

// These tests keep the deployment files true without docker or a cluster: the Dockerfile, the
// docker compose setup (docker-compose.yml and deploy/compose/), the Kubernetes manifests
// (deploy/kubernetes/) and the Grafana dashboard (deploy/grafana/). Where a compose client or
// kubectl answers, they also run `docker compose config -q` and `kubectl kustomize`.
// TestComposeDemoEndToEnd runs the compose demo's SQL, pipeline and commands against real
// PostgreSQL servers and an in-process Kafka broker, with the roles the SQL creates.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	configPath = "/etc/backflow/pipeline.yaml" // where every container reads the pipeline
	dataDir    = "/var/lib/backflow"           // the writable data directory
	httpPort   = 9464                          // metrics and health listener (named port "http")
)

// repo returns the path of a file given relative to the repository root (tests run in deploy/).
func repo(rel string) string { return filepath.Join("..", filepath.FromSlash(rel)) }

func read(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(repo(rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return data
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
	line int
}

// parseDockerfile returns the instructions of a Dockerfile: comments dropped, continuation lines
// joined.
func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, cont := strings.CutSuffix(line, `\`); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

// fromImage returns the image and the stage name of a FROM instruction.
func fromImage(args string) (image, name string) {
	var words []string
	for _, w := range strings.Fields(args) {
		if !strings.HasPrefix(w, "--") {
			words = append(words, w)
		}
	}
	if len(words) >= 3 && strings.EqualFold(words[1], "AS") {
		return words[0], words[2]
	}
	return words[0], ""
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(string(read(t, "deploy/Dockerfile")))
	st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a multi-stage build (a Go builder and a small final image)", len(st))
	}
	builder, final := st[0], st[len(st)-1]

	img, buildName := fromImage(builder[0].args)
	if !strings.HasPrefix(img, "golang:1.26") {
		t.Errorf("builder stage FROM %s; want golang:1.26", img)
	}
	if buildName == "" {
		t.Errorf("builder stage has no name (FROM … AS build)")
	}
	var build string
	for _, in := range builder {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-ldflags="-s -w"`, "-o /backflow", "./cmd/backflow"} {
		if !strings.Contains(build, want) {
			t.Errorf("builder's go build (%q) lacks %q", build, want)
		}
	}

	finalImg, _ := fromImage(final[0].args)
	switch {
	case strings.HasPrefix(finalImg, "gcr.io/distroless/static"):
	case finalImg == "scratch":
		if !slices.ContainsFunc(final, func(in instruction) bool {
			return in.cmd == "COPY" && strings.Contains(in.args, "/etc/ssl/certs")
		}) {
			t.Errorf("a scratch image needs the CA certificates copied in (/etc/ssl/certs) for TLS to Kafka and PostgreSQL")
		}
	default:
		t.Errorf("final stage FROM %s; want a small static image (gcr.io/distroless/static… or scratch)", finalImg)
	}
	var user, entrypoint, cmd, workdir string
	var exposed, copied bool
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "WORKDIR":
			workdir = in.args
		case "EXPOSE":
			exposed = exposed || slices.Contains(strings.Fields(in.args), strconv.Itoa(httpPort))
		case "COPY":
			f := strings.Fields(in.args)
			copied = copied || (slices.Contains(f, "--from="+buildName) && slices.Contains(f, "/backflow"))
		}
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("final stage runs as %q; want a non-root USER", user)
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s the /backflow binary", buildName)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/backflow"}) {
		t.Errorf(`ENTRYPOINT %s; want ["/backflow"] (exec form: SIGTERM reaches backflow)`, entrypoint)
	}
	if !strings.Contains(cmd, configPath) {
		t.Errorf("CMD %s does not name the config file %s", cmd, configPath)
	}
	if workdir != dataDir {
		t.Errorf("WORKDIR %q; want the data directory %s (relative data_dir lands there)", workdir, dataDir)
	}
	if !exposed {
		t.Errorf("final stage does not EXPOSE %d (metrics and health)", httpPort)
	}
}

// TestDockerignore checks that the build context keeps everything go build needs.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(repo(".dockerignore"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no .dockerignore")
	} else if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "cmd/backflow/main.go", "pkg/config/load.go", "connectors/postgres/postgres.go"}
	for _, line := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		for _, f := range needed {
			if ignored(p, f) {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, f)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern matches file or one of its parent directories
// (enough of the syntax for the patterns used: globs, a leading "/" and "**/").
func ignored(pattern, file string) bool {
	pattern = strings.TrimPrefix(pattern, "/")
	anyDir := strings.HasPrefix(pattern, "**/")
	pattern = strings.TrimPrefix(pattern, "**/")
	parts := strings.Split(file, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := path.Match(pattern, prefix); ok {
			return true
		}
		if ok, _ := path.Match(pattern, parts[i-1]); ok && anyDir {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// docker compose

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command       any      `yaml:"command"`
	Environment   any      `yaml:"environment"`
	Volumes       []string `yaml:"volumes"`
	Ports         []string `yaml:"ports"`
	Tmpfs         []string `yaml:"tmpfs"`
	Restart       string   `yaml:"restart"`
	ContainerName string   `yaml:"container_name"`
	ReadOnly      bool     `yaml:"read_only"`
	Healthcheck   *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeRefRe matches compose's variable references: ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}.
var composeRefRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}`)

// interpolate expands compose variables the way `docker compose` does with an empty environment:
// defaults apply, "$$" is a literal "$".
func interpolate(s string) string {
	const dollar = "\x00dollar\x00"
	s = strings.ReplaceAll(s, "$$", dollar)
	s = composeRefRe.ReplaceAllStringFunc(s, func(ref string) string {
		m := composeRefRe.FindStringSubmatch(ref)
		if strings.HasSuffix(m[2], "-") {
			return m[3]
		}
		return ""
	})
	return strings.ReplaceAll(s, dollar, "$")
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var f composeFile
	if err := yaml.Unmarshal(read(t, "docker-compose.yml"), &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// words returns a compose command or healthcheck test as a list of words.
func words(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// env returns a service's environment, interpolated with the defaults.
func (s composeService) env() map[string]string {
	out := map[string]string{}
	switch x := s.Environment.(type) {
	case map[string]any:
		for k, v := range x {
			if v == nil {
				out[k] = ""
			} else {
				out[k] = interpolate(fmt.Sprint(v))
			}
		}
	case []any:
		for _, e := range x {
			k, v, _ := strings.Cut(fmt.Sprint(e), "=")
			out[k] = interpolate(v)
		}
	}
	return out
}

// mount returns the source of the volume mounted at target ("" when none).
func (s composeService) mount(target string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0]
		}
	}
	return ""
}

// initScripts returns the files mounted into the postgres image's init directory.
func (s composeService) initScripts() []string {
	var out []string
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[1], "/docker-entrypoint-initdb.d/") {
			out = append(out, strings.TrimPrefix(parts[0], "./"))
		}
	}
	return out
}

// flagValue returns the value of -c/--config in a command line.
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

func TestCompose(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"warehouse", "storefront", "kafka", "capture", "sink"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %q", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	wh := f.Services["warehouse"]
	if !strings.HasPrefix(wh.Image, "postgres:16") {
		t.Errorf("warehouse image %q; want postgres:16", wh.Image)
	}
	cmd := strings.Join(words(wh.Command), " ")
	for _, want := range []string{"wal_level=logical", "max_replication_slots=", "max_wal_senders="} {
		if !strings.Contains(cmd, want) {
			t.Errorf("warehouse command %q lacks %s", cmd, want)
		}
	}
	if got := wh.initScripts(); !slices.Contains(got, "deploy/compose/warehouse.sql") {
		t.Errorf("warehouse init scripts %v; want deploy/compose/warehouse.sql", got)
	}
	if got := f.Services["storefront"].initScripts(); len(got) == 0 {
		t.Errorf("storefront has no init script creating public.stock")
	}

	kafka := f.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka image %q; want apache/kafka", kafka.Image)
	}
	kenv := kafka.env()
	roles := strings.Split(kenv["KAFKA_PROCESS_ROLES"], ",")
	if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
		t.Errorf("KAFKA_PROCESS_ROLES %q; want broker,controller (KRaft, single node)", kenv["KAFKA_PROCESS_ROLES"])
	}
	for k := range kenv {
		if strings.Contains(k, "ZOOKEEPER") {
			t.Errorf("kafka sets %s; KRaft mode needs no ZooKeeper", k)
		}
	}
	if !strings.Contains(kenv["KAFKA_ADVERTISED_LISTENERS"], "//kafka:9092") {
		t.Errorf("KAFKA_ADVERTISED_LISTENERS %q; other containers must reach the broker at kafka:9092", kenv["KAFKA_ADVERTISED_LISTENERS"])
	}
	if id, err := base64.RawURLEncoding.DecodeString(kenv["CLUSTER_ID"]); err != nil || len(id) != 16 {
		t.Errorf("CLUSTER_ID %q is not a base64url-encoded 16-byte UUID (kafka-storage.sh random-uuid)", kenv["CLUSTER_ID"])
	}

	for name, s := range f.Services {
		if s.Restart != "unless-stopped" {
			t.Errorf("service %s: restart %q; want unless-stopped", name, s.Restart)
		}
		for dep, d := range s.DependsOn {
			ds, ok := f.Services[dep]
			switch {
			case !ok:
				t.Errorf("service %s depends on unknown service %s", name, dep)
			case d.Condition == "service_healthy" && ds.Healthcheck == nil:
				t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(repo(src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := f.Volumes[src]; !ok {
				t.Errorf("service %s mounts volume %q, not declared under volumes:", name, src)
			}
		}
	}
	for _, name := range []string{"warehouse", "storefront", "kafka"} {
		if f.Services[name].Healthcheck == nil {
			t.Errorf("service %s has no healthcheck", name)
		}
	}

	for _, name := range []string{"capture", "sink"} {
		s := f.Services[name]
		if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("service %s does not build from deploy/Dockerfile: %+v", name, s.Build)
		} else if _, err := os.Stat(repo(path.Join(s.Build.Context, s.Build.Dockerfile))); err != nil {
			t.Errorf("service %s: build context %q with dockerfile %q: %v", name, s.Build.Context, s.Build.Dockerfile, err)
		}
		args := words(s.Command)
		if len(args) == 0 || args[0] != name {
			t.Errorf("service %s runs %v; want `backflow %s …`", name, args, name)
		}
		if got := flagValue(args, "-c", "--config"); got != configPath {
			t.Errorf("service %s reads config %q; want %s", name, got, configPath)
		}
		if got := s.mount(configPath); got != "./deploy/compose/pipeline.yaml" {
			t.Errorf("service %s mounts %q at %s; want ./deploy/compose/pipeline.yaml", name, got, configPath)
		}
		if !s.ReadOnly {
			t.Errorf("service %s: want read_only: true (the image writes only to %s)", name, dataDir)
		}
		if s.mount(dataDir) == "" && !slices.Contains(s.Tmpfs, dataDir) {
			t.Errorf("service %s has no writable %s (volume or tmpfs)", name, dataDir)
		}
		if _, ok := s.DependsOn["kafka"]; !ok {
			t.Errorf("service %s does not depend on kafka", name)
		}
	}
	if _, ok := f.Services["capture"].DependsOn["warehouse"]; !ok {
		t.Errorf("capture does not depend on the warehouse")
	}
	if _, ok := f.Services["sink"].DependsOn["storefront"]; !ok {
		t.Errorf("sink does not depend on the storefront")
	}
	if s := f.Services["sink"]; s.ContainerName != "" || len(s.Ports) > 0 {
		t.Errorf("sink has container_name or host ports; `docker compose up --scale sink=N` needs neither")
	}
}

// TestComposeVariables checks every variable docker-compose.yml refers to: it has a default or
// deploy/README.md documents it, and no bare "$" slips through compose's interpolation.
func TestComposeVariables(t *testing.T) {
	src := string(read(t, "docker-compose.yml"))
	readme := string(read(t, "deploy/README.md"))
	refs := composeRefRe.FindAllStringSubmatch(src, -1)
	if len(refs) == 0 {
		t.Fatal("docker-compose.yml refers to no variables; secrets should come from the environment")
	}
	for _, m := range refs {
		hasDefault := strings.HasSuffix(m[2], "-")
		if !hasDefault && !strings.Contains(readme, m[1]) {
			t.Errorf("docker-compose.yml uses ${%s} without a default, and deploy/README.md does not document it", m[1])
		}
	}
	rest := strings.ReplaceAll(composeRefRe.ReplaceAllString(src, ""), "$$", "")
	if i := strings.Index(rest, "$"); i >= 0 {
		t.Errorf("docker-compose.yml has a bare $ (compose would interpolate it; write $$): …%s…", rest[max(0, i-30):min(len(rest), i+30)])
	}
	// Secrets come from variables, not literals in the file.
	pw := regexp.MustCompile(`(?m)^\s*(POSTGRES_PASSWORD|BACKFLOW_PASSWORD):\s*(.*)$`).FindAllStringSubmatch(src, -1)
	if len(pw) < 4 {
		t.Errorf("found %d POSTGRES_PASSWORD/BACKFLOW_PASSWORD settings; want the admin's and backflow's for both databases", len(pw))
	}
	for _, p := range pw {
		if !strings.Contains(p[2], "${") {
			t.Errorf("%s: %q is a literal; take it from the environment", p[1], p[2])
		}
	}
}

// envRefRe finds ${VAR} references in a pipeline file.
var envRefRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// withEnv gives every variable the pipeline refers to its value in env, or unsets it, until the
// test ends.
func withEnv(t *testing.T, pipeline []byte, env map[string]string) {
	t.Helper()
	for _, m := range envRefRe.FindAllSubmatch(pipeline, -1) {
		name := string(m[1])
		t.Setenv(name, env[name])
		if _, ok := env[name]; !ok {
			os.Unsetenv(name)
		}
	}
}

// TestComposePipeline checks deploy/compose/pipeline.yaml passes the project's validation in each
// backflow service's environment, and points at the compose services.
func TestComposePipeline(t *testing.T) {
	f := loadCompose(t)
	data := read(t, "deploy/compose/pipeline.yaml")
	for _, name := range []string{"capture", "sink"} {
		t.Run(name, func(t *testing.T) {
			withEnv(t, data, f.Services[name].env())
			cfg, err := config.Parse(data, "deploy/compose/pipeline.yaml")
			if err != nil {
				t.Fatalf("in the %s service's environment: %v", name, err)
			}
			if !slices.Equal(cfg.Kafka.Brokers, []string{"kafka:9092"}) {
				t.Errorf("kafka.brokers %v; want [kafka:9092]", cfg.Kafka.Brokers)
			}
			if cfg.DataDir != dataDir {
				t.Errorf("data_dir %q; want %s", cfg.DataDir, dataDir)
			}
			i := slices.IndexFunc(cfg.Sinks, func(s config.Sink) bool { return s.Name == "storefront-stock" })
			if i < 0 {
				t.Fatalf("no storefront-stock sink")
			}
			src, _ := url.Parse(cfg.Source.Postgres.URL)
			dst, _ := url.Parse(fmt.Sprint(cfg.Sinks[i].With["url"]))
			if src == nil || src.Hostname() != "warehouse" || dst == nil || dst.Hostname() != "storefront" {
				t.Errorf("source url host %v, sink url host %v; want the warehouse and storefront services", src, dst)
			}
			// Each service holds its own credentials only.
			own := map[string]*url.URL{"capture": src, "sink": dst}[name]
			if _, ok := own.User.Password(); !ok {
				t.Errorf("%s service's database URL has no password from its environment", name)
			}
		})
	}
}

// TestComposeConfig runs `docker compose config -q` where a compose client answers.
func TestComposeConfig(t *testing.T) {
	var compose []string
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err == nil {
		compose = []string{"docker", "compose"}
	} else if out2, err2 := exec.Command("docker-compose", "version", "--short").Output(); err2 == nil && !strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out2)), "v"), "1.") {
		compose = []string{"docker-compose"}
	} else {
		t.Skipf("no docker compose v2 client answers (%v: %s)", err, bytes.TrimSpace(out))
	}
	cmd := exec.Command(compose[0], append(compose[1:], "-f", "docker-compose.yml", "config", "-q")...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s config -q: %v\n%s", strings.Join(compose, " "), err, out)
	}
}

// ---------------------------------------------------------------------------------------------
// The compose demo, end to end without docker

// TestComposeDemoEndToEnd plays docker-compose.yml on this machine: two PostgreSQL servers set up
// by the compose init scripts (with the roles they create), an in-process Kafka broker in place
// of the kafka service, and the capture and sink services' commands, environment and pipeline
// file. Rows must reach the storefront, and SIGTERM must stop both well within the grace period.
func TestComposeDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Kafka and backflow processes")
	}
	f := loadCompose(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The two database services, each its own server, as in compose.
	servers := map[string]*testenv.Postgres{}
	for _, name := range []string{"warehouse", "storefront"} {
		svc := f.Services[name]
		pg := testenv.NewPostgres(t)
		db := svc.env()["POSTGRES_DB"]
		if err := pg.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
		for _, script := range svc.initScripts() {
			runInitScript(t, pg, db, script, svc.env())
		}
		servers[name] = pg
	}
	wh, sf := servers["warehouse"], servers["storefront"]
	checkRoles(ctx, t, wh, sf)

	k := testenv.NewKafka(t)
	bin := buildBackflow(t)
	dir := t.TempDir()
	pipeline := string(read(t, "deploy/compose/pipeline.yaml"))
	for from, to := range map[string]string{"[kafka:9092]": "[" + k.Addr() + "]", dataDir: dir} {
		if strings.Count(pipeline, from) != 1 {
			t.Fatalf("deploy/compose/pipeline.yaml: expected %q once", from)
		}
		pipeline = strings.Replace(pipeline, from, to, 1)
	}
	pipelineFile := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(pipelineFile, []byte(pipeline), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]int{"warehouse": wh.Port(), "storefront": sf.Port()}
	capture := startService(t, bin, "capture", f.Services["capture"], pipelineFile, hosts)
	sink := startService(t, bin, "sink", f.Services["sink"], pipelineFile, hosts)

	// The snapshot: every active inventory row reaches the storefront.
	wconn, err := wh.Connect(ctx, "warehouse")
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close(context.Background())
	sconn, err := sf.Connect(ctx, "storefront")
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close(context.Background())
	var want int
	if err := wconn.QueryRow(ctx, "SELECT count(*) FROM public.inventory WHERE active").Scan(&want); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the snapshot in the storefront", capture, sink, func() (bool, error) {
		var n int
		err := sconn.QueryRow(ctx, "SELECT count(*) FROM public.stock").Scan(&n)
		return n == want, err
	})

	// Streaming: an update and a delete in the warehouse follow.
	if _, err := wconn.Exec(ctx, `UPDATE public.inventory SET qty = 7, reserved = 2 WHERE sku = 'SKU-001' AND warehouse = 'ams'`); err != nil {
		t.Fatal(err)
	}
	if _, err := wconn.Exec(ctx, `DELETE FROM public.inventory WHERE sku = 'SKU-002' AND warehouse = 'nyc'`); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the update and the delete in the storefront", capture, sink, func() (bool, error) {
		var avail, gone int
		err := sconn.QueryRow(ctx, `SELECT
			coalesce((SELECT available FROM public.stock WHERE sku = 'SKU-001' AND warehouse = 'ams'), -1),
			(SELECT count(*) FROM public.stock WHERE sku = 'SKU-002' AND warehouse = 'nyc')`).Scan(&avail, &gone)
		return avail == 5 && gone == 0, err
	})

	// The roles of the init scripts are enough: nothing was refused (SQLSTATE 42501).
	for _, p := range []*service{capture, sink} {
		if out := p.log.String(); strings.Contains(out, "42501") || strings.Contains(out, "permission denied") {
			t.Errorf("%s was refused a privilege the compose init scripts should grant:\n%s", p.name, grepLines(out, "permission denied", "42501"))
		}
	}

	// docker compose stop and Kubernetes send SIGTERM and wait 60 s before SIGKILL.
	for _, p := range []*service{capture, sink} {
		p.stop(t, 60*time.Second)
	}
}

// runInitScript runs one of the postgres image's init scripts the way its entrypoint does:
// psql -v ON_ERROR_STOP=1 --no-psqlrc as the superuser in POSTGRES_DB, with the container's
// environment.
func runInitScript(t *testing.T, pg *testenv.Postgres, db, script string, env map[string]string) {
	t.Helper()
	psql := filepath.Join(pg.BinDir(), "psql")
	if _, err := os.Stat(psql); err != nil {
		if psql, err = exec.LookPath("psql"); err != nil {
			t.Fatalf("no psql to run %s: %v", script, err)
		}
	}
	cmd := exec.Command(psql, "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-q", "-d", pg.URL(db), "-f", repo(script))
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// checkRoles checks the roles the init scripts create have what backflow needs and no more.
func checkRoles(ctx context.Context, t *testing.T, wh, sf *testenv.Postgres) {
	t.Helper()
	type check struct {
		pg        *testenv.Postgres
		db, query string
		want      bool
	}
	for _, c := range []check{
		{wh, "warehouse", "SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = 'backflow'", true},
		{wh, "warehouse", "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = 'backflow'", false},
		{wh, "warehouse", "SELECT has_table_privilege('backflow', 'public.inventory', 'SELECT') AND has_table_privilege('backflow', 'analytics.lead_scores', 'SELECT')", true},
		{wh, "warehouse", "SELECT has_table_privilege('backflow', 'public.inventory', 'INSERT,UPDATE,DELETE,TRUNCATE')", false},
		{wh, "warehouse", "SELECT EXISTS (SELECT FROM pg_tables WHERE tableowner = 'backflow' AND schemaname <> 'backflow')", false},
		{wh, "warehouse", "SELECT has_database_privilege('backflow', 'warehouse', 'CREATE') OR has_schema_privilege('backflow', 'public', 'CREATE')", false},
		{wh, "warehouse", "SELECT count(*) = 3 FROM pg_publication_tables WHERE pubname = 'backflow'", true},
		// The heartbeat that advances an idle slot.
		{wh, "warehouse", "SELECT has_function_privilege('backflow', 'pg_logical_emit_message(boolean, text, text)', 'EXECUTE')", true},
		{sf, "storefront", "SELECT rolsuper OR rolreplication OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = 'backflow'", false},
		{sf, "storefront", "SELECT has_table_privilege('backflow', 'public.stock', 'SELECT,INSERT,UPDATE,DELETE')", true},
	} {
		conn, err := c.pg.Connect(ctx, c.db)
		if err != nil {
			t.Fatal(err)
		}
		var got bool
		err = conn.QueryRow(ctx, c.query).Scan(&got)
		conn.Close(ctx)
		if err != nil || got != c.want {
			t.Errorf("%s: %s = %v (%v); want %v", c.db, c.query, got, err, c.want)
		}
	}
}

func buildBackflow(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backflow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/backflow")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/backflow: %v\n%s", err, out)
	}
	return bin
}

type service struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// syncBuffer collects a process's output; exec.Cmd writes to it from its own goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startService starts a compose service's command with its environment, the pipeline file in
// place of the mounted one and the compose host names mapped to the local servers.
func startService(t *testing.T, bin, name string, svc composeService, pipelineFile string, hosts map[string]int) *service {
	t.Helper()
	args := words(svc.Command)
	for i, a := range args {
		if a == configPath {
			args[i] = pipelineFile
		}
	}
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "WAREHOUSE_URL" && k != "STOREFRONT_URL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range svc.env() {
		if u, err := url.Parse(v); err == nil && u.Scheme == "postgres" {
			if port, ok := hosts[u.Hostname()]; ok {
				u.Host = fmt.Sprintf("127.0.0.1:%d", port)
				v = u.String()
			}
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &service{name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-s.done:
			s.done <- err
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("---- %s output (last 80 lines) ----\n%s", name, tailLines(s.log.String(), 80))
		}
	})
	return s
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(l, sub) }) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exited reports a service that stopped by itself.
func (s *service) exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		if err == nil {
			err = errors.New("exited with status 0")
		}
		return fmt.Errorf("%s stopped: %w", s.name, err)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for a clean exit within grace.
func (s *service) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", s.name, err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Errorf("%s after SIGTERM: %v; want exit status 0", s.name, err)
		}
		t.Logf("%s stopped %v after SIGTERM", s.name, time.Since(start).Round(time.Millisecond))
	case <-time.After(grace):
		t.Errorf("%s still running %v after SIGTERM; docker and Kubernetes would SIGKILL it", s.name, grace)
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, capture, sink *service, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, err := cond()
		if ok {
			return
		}
		for _, s := range []*service{capture, sink} {
			if e := s.exited(); e != nil {
				t.Fatalf("waiting for %s: %v", what, e)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

type object struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   objectMeta     `yaml:"metadata"`
	Data       map[string]any `yaml:"data"`
	StringData map[string]any `yaml:"stringData"`
	Spec       objectSpec     `yaml:"spec"`
	file       string
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type objectSpec struct {
	Replicas *int `yaml:"replicas"`
	Strategy struct {
		Type string `yaml:"type"`
	} `yaml:"strategy"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata objectMeta `yaml:"metadata"`
		Spec     podSpec    `yaml:"spec"`
	} `yaml:"template"`
	// PodDisruptionBudget
	MinAvailable   any `yaml:"minAvailable"`
	MaxUnavailable any `yaml:"maxUnavailable"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
		EmptyDir any `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name string `yaml:"name"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// loadManifests reads every file the kustomization lists, each possibly holding several YAML
// documents.
func loadManifests(t *testing.T) []object {
	t.Helper()
	var kust struct {
		Resources []string `yaml:"resources"`
		Namespace string   `yaml:"namespace"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/kubernetes/kustomization.yaml"), &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if kust.Namespace != "" {
		t.Errorf("kustomization.yaml sets namespace %q; the manifests are namespace-less", kust.Namespace)
	}
	files, _ := filepath.Glob(repo("deploy/kubernetes/*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(kust.Resources, base) {
			t.Errorf("deploy/kubernetes/%s is not listed in kustomization.yaml", base)
		}
	}
	var out []object
	for _, res := range kust.Resources {
		data := read(t, "deploy/kubernetes/"+res)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("deploy/kubernetes/%s: %v", res, err)
			}
			if o.Kind == "" {
				continue // an empty document
			}
			o.file = res
			out = append(out, o)
		}
	}
	return out
}

// intp formats an optional number.
func intp(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}

func findObject(objs []object, kind, name string) *object {
	for i := range objs {
		if objs[i].Kind == kind && (name == "" || objs[i].Metadata.Name == name) {
			return &objs[i]
		}
	}
	return nil
}

// deployment returns the Deployment whose container runs the given backflow command.
func deployment(t *testing.T, objs []object, command string) *object {
	t.Helper()
	for i, o := range objs {
		if o.Kind == "Deployment" && len(o.Spec.Template.Spec.Containers) > 0 {
			if args := o.Spec.Template.Spec.Containers[0].Args; len(args) > 0 && args[0] == command {
				return &objs[i]
			}
		}
	}
	t.Fatalf("no Deployment runs `backflow %s`", command)
	return nil
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	kinds := map[string]int{}
	apiVersions := map[string]string{"ConfigMap": "v1", "Secret": "v1", "Deployment": "apps/v1", "PodDisruptionBudget": "policy/v1", "HorizontalPodAutoscaler": "autoscaling/v2"}
	for _, o := range objs {
		kinds[o.Kind]++
		if want, ok := apiVersions[o.Kind]; !ok {
			t.Errorf("%s: unexpected kind %s", o.file, o.Kind)
		} else if o.APIVersion != want {
			t.Errorf("%s: %s has apiVersion %s; want %s", o.file, o.Kind, o.APIVersion, want)
		}
		if o.Metadata.Name == "" {
			t.Errorf("%s: %s without a name", o.file, o.Kind)
		}
		if o.Metadata.Namespace != "" {
			t.Errorf("%s: %s/%s sets namespace %q; the manifests are namespace-less", o.file, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
	for kind, n := range map[string]int{"ConfigMap": 1, "Secret": 1, "Deployment": 2, "PodDisruptionBudget": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s object(s); want %d", kinds[kind], kind, n)
		}
	}
	cm, secret := findObject(objs, "ConfigMap", ""), findObject(objs, "Secret", "")
	if cm == nil || secret == nil {
		t.Fatal("no ConfigMap or Secret")
	}

	capture, sink := deployment(t, objs, "capture"), deployment(t, objs, "sink")
	if r := capture.Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("capture replicas %s; want exactly 1 (one process per replication slot)", intp(r))
	}
	if capture.Spec.Strategy.Type != "Recreate" {
		t.Errorf("capture strategy %q; want Recreate (the old pod must release the slot before the new one starts)", capture.Spec.Strategy.Type)
	}
	if r := sink.Spec.Replicas; r == nil || *r < 2 {
		t.Errorf("sink replicas %s; want several workers sharing the partitions", intp(r))
	}
	if sink.Spec.Strategy.Type == "Recreate" {
		t.Errorf("sink strategy Recreate; sink workers can roll")
	}

	for _, d := range []*object{capture, sink} {
		checkDeployment(t, d, cm, secret)
	}

	pdb := findObject(objs, "PodDisruptionBudget", "")
	if pdb != nil {
		if !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, sink.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selects %v; want the sink pods %v", pdb.Spec.Selector.MatchLabels, sink.Spec.Selector.MatchLabels)
		}
		if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
			t.Errorf("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
		}
	}
}

func checkDeployment(t *testing.T, d *object, cm, secret *object) {
	t.Helper()
	name := d.Metadata.Name
	tmpl := d.Spec.Template
	for k, v := range d.Spec.Selector.MatchLabels {
		if tmpl.Metadata.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod template's labels", name, k, v)
		}
	}
	ann := tmpl.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(httpPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: prometheus annotations %v; want scrape \"true\", port \"%d\", path /metrics", name, ann, httpPort)
	}
	pod := tmpl.Spec
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		t.Errorf("%s: terminationGracePeriodSeconds %s; want 60 (SIGTERM finishes the batch in flight)", name, intp(g))
	}
	if r := pod.SecurityContext.RunAsNonRoot; r == nil || !*r {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers; want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) > 0 {
		t.Errorf("%s: command %v overrides the image's ENTRYPOINT /backflow; use args", name, c.Command)
	}
	if got := flagValue(c.Args, "-c", "--config"); got != configPath {
		t.Errorf("%s: args %v read config %q; want %s", name, c.Args, got, configPath)
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--http") }) {
		t.Errorf("%s: args %v; the listener is configured in the pipeline file (http.listen)", name, c.Args)
	}
	if !slices.ContainsFunc(c.Ports, func(p struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}) bool {
		return p.Name == "http" && p.ContainerPort == httpPort
	}) {
		t.Errorf("%s: no container port named http = %d", name, httpPort)
	}
	checkProbe(t, name, "liveness", c.LivenessProbe, "/healthz")
	checkProbe(t, name, "readiness", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		checkProbe(t, name, "startup", c.StartupProbe, "/healthz")
	}
	for _, res := range []string{"cpu", "memory"} {
		if c.Resources.Requests[res] == nil || c.Resources.Limits[res] == nil {
			t.Errorf("%s: resources lack a %s request or limit", name, res)
		}
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", name)
	}
	if !slices.ContainsFunc(c.EnvFrom, func(e struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	}) bool {
		return e.SecretRef != nil && e.SecretRef.Name == secret.Metadata.Name
	}) {
		t.Errorf("%s: environment does not come from Secret %s", name, secret.Metadata.Name)
	}
	volumes := map[string]int{}
	for i, v := range pod.Volumes {
		volumes[v.Name] = i
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		i, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: mount %s of unknown volume %s", name, m.MountPath, m.Name)
			continue
		}
		v := pod.Volumes[i]
		switch {
		case v.ConfigMap != nil:
			if m.SubPath != "" { // one key, mounted as the file mountPath
				mounts[m.MountPath] = "configMap:" + v.ConfigMap.Name
			} else { // every key, a file in the directory mountPath
				mounts[path.Join(m.MountPath, "pipeline.yaml")] = "configMap:" + v.ConfigMap.Name
			}
		case v.EmptyDir != nil:
			mounts[m.MountPath] = "emptyDir"
		}
	}
	if got := mounts[configPath]; got != "configMap:"+cm.Metadata.Name {
		t.Errorf("%s: %s comes from %q; want ConfigMap %s", name, configPath, got, cm.Metadata.Name)
	}
	if mounts[dataDir] != "emptyDir" {
		t.Errorf("%s: %s is not an emptyDir (the root filesystem is read-only)", name, dataDir)
	}
}

func checkProbe(t *testing.T, deployment, kind string, p *probe, path string) {
	t.Helper()
	switch {
	case p == nil || p.HTTPGet == nil:
		t.Errorf("%s: no %s probe with httpGet", deployment, kind)
	case p.HTTPGet.Path != path:
		t.Errorf("%s: %s probe GET %s; want %s", deployment, kind, p.HTTPGet.Path, path)
	case fmt.Sprint(p.HTTPGet.Port) != "http" && fmt.Sprint(p.HTTPGet.Port) != strconv.Itoa(httpPort):
		t.Errorf("%s: %s probe port %v; want the named port http", deployment, kind, p.HTTPGet.Port)
	}
}

// configMapPipeline returns the pipeline file of the ConfigMap and the Secret's keys and values.
func configMapPipeline(t *testing.T) ([]byte, map[string]string) {
	t.Helper()
	objs := loadManifests(t)
	cm, secret := findObject(objs, "ConfigMap", ""), findObject(objs, "Secret", "")
	if cm == nil || secret == nil {
		t.Fatal("no ConfigMap or Secret")
	}
	pipeline, ok := cm.Data["pipeline.yaml"].(string)
	if !ok {
		t.Fatalf("ConfigMap %s has no pipeline.yaml", cm.Metadata.Name)
	}
	env := map[string]string{}
	for k, v := range secret.StringData {
		env[k] = fmt.Sprint(v)
	}
	return []byte(pipeline), env
}

// topLevel returns the text of a top-level key of a YAML file (its line and the indented lines
// after it), and the file without it.
func topLevel(src []byte, key string) (section, rest string) {
	var in bool
	var sec, out strings.Builder
	for _, line := range strings.SplitAfter(string(src), "\n") {
		top := line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '\n' && line[0] != '#'
		if top {
			in = strings.HasPrefix(line, key+":")
		}
		if in {
			sec.WriteString(line)
		} else {
			out.WriteString(line)
		}
	}
	return sec.String(), out.String()
}

// hasYAMLField reports whether config.Pipeline has a top-level field named key.
func hasYAMLField(key string) bool {
	for _, f := range reflect.VisibleFields(reflect.TypeFor[config.Pipeline]()) {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return true
		}
	}
	return false
}

// TestKubernetesPipeline checks the ConfigMap's pipeline file passes the project's validation
// with the Secret's (placeholder) values, and fits the Deployments.
func TestKubernetesPipeline(t *testing.T) {
	data, secretEnv := configMapPipeline(t)
	for _, m := range envRefRe.FindAllSubmatch(data, -1) {
		if _, ok := secretEnv[string(m[1])]; !ok {
			t.Errorf("the pipeline refers to ${%s}, which the Secret does not provide", m[1])
		}
	}
	for _, key := range []string{"WAREHOUSE_URL", "STOREFRONT_URL", "KAFKA_PASSWORD", "BACKFLOW_HTTP_TOKEN"} {
		if _, ok := secretEnv[key]; !ok {
			t.Errorf("the Secret has no %s", key)
		}
	}
	httpSection, withoutHTTP := topLevel(data, "http")
	if !regexp.MustCompile(`(?m)^\s+listen:\s*"?:` + strconv.Itoa(httpPort) + `"?\s*$`).MatchString(httpSection) {
		t.Errorf("the pipeline's http section %q does not listen on :%d, the containers' http port", httpSection, httpPort)
	}

	src := data
	if !hasYAMLField("http") {
		// pkg/config does not know http.listen yet: validate the rest; TestKubernetesHTTPListen
		// is skipped until it does.
		src = []byte(withoutHTTP)
	}
	withEnv(t, src, secretEnv)
	cfg, err := config.Parse(src, "deploy/kubernetes/configmap.yaml:pipeline.yaml")
	if err != nil {
		t.Fatalf("the ConfigMap's pipeline with the Secret's values: %v", err)
	}
	if len(cfg.Kafka.Brokers) == 0 {
		t.Errorf("kafka.brokers is empty: every pod would start its own embedded broker")
	}
	if cfg.Kafka.TLS == nil || cfg.Kafka.SASL == nil {
		t.Errorf("kafka.tls and kafka.sasl should both be set in the production example: %+v %+v", cfg.Kafka.TLS, cfg.Kafka.SASL)
	}
	if cfg.DataDir != dataDir {
		t.Errorf("data_dir %q; want %s (the emptyDir)", cfg.DataDir, dataDir)
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log.format %q; want json in a cluster", cfg.Log.Format)
	}
}

// TestKubernetesHTTPListen checks the probes' listener is configured through the pipeline file
// once pkg/config knows http.listen.
func TestKubernetesHTTPListen(t *testing.T) {
	if !hasYAMLField("http") {
		t.Skip("pkg/config has no top-level http field yet (http: {listen: \":9464\"}); the probes and scrape annotations need it")
	}
	data, secretEnv := configMapPipeline(t)
	withEnv(t, data, secretEnv)
	cfg, err := config.Parse(data, "deploy/kubernetes/configmap.yaml:pipeline.yaml")
	if err != nil {
		t.Fatalf("the ConfigMap's pipeline with the Secret's values: %v", err)
	}
	// Find the listen address through the yaml tags, whatever the Go field names are.
	v := reflect.ValueOf(cfg).Elem()
	for _, key := range []string{"http", "listen"} {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		found := false
		for _, f := range reflect.VisibleFields(v.Type()) {
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
				v, found = v.FieldByIndex(f.Index), true
				break
			}
		}
		if !found {
			t.Fatalf("config.Pipeline has no field http.%s", key)
		}
	}
	if got := fmt.Sprint(v.Interface()); got != ":"+strconv.Itoa(httpPort) {
		t.Errorf("http.listen %q; want :%d", got, httpPort)
	}
	// The listener is on every pod address: the status and metrics need the bearer token,
	// taken from the Secret (which the containers' environment comes from).
	if cfg.HTTP.Token == "" || cfg.HTTP.Token != secretEnv["BACKFLOW_HTTP_TOKEN"] {
		t.Errorf("http.token %q; want it from the Secret's BACKFLOW_HTTP_TOKEN (%q)", cfg.HTTP.Token, secretEnv["BACKFLOW_HTTP_TOKEN"])
	}
	httpSection, _ := topLevel(data, "http")
	if !regexp.MustCompile(`(?m)^\s+token:\s*\$\{BACKFLOW_HTTP_TOKEN\}\s*$`).MatchString(httpSection) {
		t.Errorf("the pipeline's http section %q does not take token from ${BACKFLOW_HTTP_TOKEN}", httpSection)
	}
}

// TestKustomize runs `kubectl kustomize` where kubectl exists: the kustomization builds.
func TestKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl")
	}
	out, err := exec.Command(kubectl, "kustomize", repo("deploy/kubernetes")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	if n := len(regexp.MustCompile(`(?m)^kind: `).FindAll(out, -1)); n < 5 {
		t.Errorf("kubectl kustomize produced %d objects; want at least 5", n)
	}
}

// ---------------------------------------------------------------------------------------------
// Grafana

// metrics is the metric contract of issue 6: name, type and labels.
var metrics = map[string]struct {
	histogram bool
	labels    []string
}{
	"backflow_capture_changes_total":           {false, []string{"table", "op"}},
	"backflow_capture_slot_lag_bytes":          {false, []string{"slot"}},
	"backflow_capture_produce_latency_seconds": {true, nil},
	"backflow_sink_consumer_lag":               {false, []string{"sink", "topic", "partition"}},
	"backflow_sink_records_applied_total":      {false, []string{"sink"}},
	"backflow_sink_apply_latency_seconds":      {true, []string{"sink"}},
	"backflow_e2e_latency_seconds":             {true, []string{"sink"}},
	"backflow_sink_retries_total":              {false, []string{"sink"}},
	"backflow_sink_dlq_records_total":          {false, []string{"sink"}},
	"backflow_errors_total":                    {false, []string{"component"}},
}

var (
	metricRe   = regexp.MustCompile(`\bbackflow_[a-zA-Z0-9_:]+`)
	groupingRe = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	legendRe   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// baseMetric maps a series name to its contract metric (histogram series have suffixes).
func baseMetric(series string) (string, bool) {
	if _, ok := metrics[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			if m, ok := metrics[base]; ok && m.histogram {
				return base, true
			}
		}
	}
	return "", false
}

// queries collects every PromQL expression in the dashboard (panel targets and variables), with
// the legend format of each target.
func queries(v any, out *[][2]string) {
	switch x := v.(type) {
	case map[string]any:
		if e, ok := x["expr"].(string); ok {
			legend, _ := x["legendFormat"].(string)
			*out = append(*out, [2]string{e, legend})
		}
		if d, ok := x["definition"].(string); ok {
			*out = append(*out, [2]string{d, ""})
		}
		for _, e := range x {
			queries(e, out)
		}
	case []any:
		for _, e := range x {
			queries(e, out)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	var dash map[string]any
	if err := json.Unmarshal(read(t, "deploy/grafana/backflow-dashboard.json"), &dash); err != nil {
		t.Fatalf("backflow-dashboard.json: %v", err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v; want a current dashboard schema (≥ 36)", dash["schemaVersion"])
	}
	for _, k := range []string{"uid", "title"} {
		if s, _ := dash[k].(string); s == "" {
			t.Errorf("dashboard has no %s", k)
		}
	}

	// A Prometheus data source variable, used by every panel and query.
	var dsVar string
	templ, _ := dash["templating"].(map[string]any)
	vars, _ := templ["list"].([]any)
	for _, v := range vars {
		m, _ := v.(map[string]any)
		if m["type"] == "datasource" && m["query"] == "prometheus" {
			dsVar, _ = m["name"].(string)
		}
	}
	if dsVar == "" {
		t.Fatal("no data source variable of type prometheus")
	}
	okDS := func(ds any) bool {
		m, _ := ds.(map[string]any)
		uid, _ := m["uid"].(string)
		return m["type"] == "prometheus" && (uid == "${"+dsVar+"}" || uid == "$"+dsVar)
	}

	ids := map[float64]bool{}
	var walk func(panels []any)
	count := 0
	walk = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			title, _ := pm["title"].(string)
			id, _ := pm["id"].(float64)
			if ids[id] {
				t.Errorf("panel %q: duplicate id %v", title, id)
			}
			ids[id] = true
			gp, _ := pm["gridPos"].(map[string]any)
			if w, _ := gp["w"].(float64); w < 1 || w > 24 {
				t.Errorf("panel %q: gridPos %v", title, gp)
			}
			if pm["type"] == "row" {
				sub, _ := pm["panels"].([]any)
				walk(sub)
				continue
			}
			count++
			if !okDS(pm["datasource"]) {
				t.Errorf("panel %q: datasource %v; want the $%s variable", title, pm["datasource"], dsVar)
			}
			targets, _ := pm["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("panel %q has no queries", title)
			}
			for _, tg := range targets {
				if tm, _ := tg.(map[string]any); !okDS(tm["datasource"]) {
					t.Errorf("panel %q: a query's datasource %v; want the $%s variable", title, tm["datasource"], dsVar)
				}
			}
		}
	}
	panels, _ := dash["panels"].([]any)
	walk(panels)
	if count < 8 {
		t.Errorf("%d panels; want the overview of issue 6", count)
	}

	var qs [][2]string
	queries(dash, &qs)
	used := map[string]bool{}
	for _, q := range qs {
		expr, legend := q[0], q[1]
		labels := map[string]bool{}
		histogram := false
		series := metricRe.FindAllString(expr, -1)
		if len(series) == 0 {
			t.Errorf("query %q reads no backflow metric", expr)
		}
		for _, s := range series {
			base, ok := baseMetric(s)
			if !ok {
				t.Errorf("query %q reads %s, which is not in the metric contract", expr, s)
				continue
			}
			used[base] = true
			for _, l := range metrics[base].labels {
				labels[l] = true
			}
			histogram = histogram || strings.HasSuffix(s, "_bucket")
		}
		if histogram {
			labels["le"] = true
		}
		var named []string
		for _, g := range groupingRe.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				named = append(named, strings.TrimSpace(l))
			}
		}
		for _, m := range matcherRe.FindAllStringSubmatch(expr, -1) {
			named = append(named, m[1])
		}
		if m := regexp.MustCompile(`label_values\(\s*[a-zA-Z0-9_]+\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`).FindStringSubmatch(expr); m != nil {
			named = append(named, m[1])
		}
		for _, m := range legendRe.FindAllStringSubmatch(legend, -1) {
			named = append(named, m[1])
		}
		for _, l := range named {
			if l != "" && !labels[l] {
				t.Errorf("query %q (legend %q) uses label %q, which its metrics do not have", expr, legend, l)
			}
		}
	}
	for name := range metrics {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}
