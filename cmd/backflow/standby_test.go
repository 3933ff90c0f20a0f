package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// standbyNode is one `backflow capture` process of a pair, with its own metrics listener.
type standbyNode struct {
	p       *process
	cfg     string
	metrics string // base URL of its http.listen
}

func startNode(t *testing.T, bin, pgURL string, brokers []string) *standbyNode {
	t.Helper()
	port := freePort(t)
	cfg := writeConfig(t, pipelineYAML(pgURL, brokers, fmt.Sprintf("http: {listen: \"127.0.0.1:%d\"}\n", port)))
	return &standbyNode{p: startProcess(t, bin, "capture", "-c", cfg), cfg: cfg, metrics: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// active reads the node's backflow_capture_active gauge; -1 while it is not known yet.
func (n *standbyNode) active(t *testing.T) float64 {
	t.Helper()
	if code, _ := httpGet(n.metrics + "/metrics"); code != http.StatusOK {
		return -1
	}
	v, ok := scrape(t, n.metrics)[`backflow_capture_active{slot="backflow"}`]
	if !ok {
		return -1
	}
	return v
}

// capturedBy is the active capture `backflow status --json` shows.
func capturedBy(t *testing.T, bin, cfg string) string {
	t.Helper()
	// Exit 1 (unhealthy, e.g. before the slot exists) still prints the JSON, then the verdict.
	out, _ := runBinary(t, bin, nil, "status", "-c", cfg, "--json")
	var st observe.Status
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st.Capture.Instance
}

// waitActive waits until status shows want as the slot's capture and its gauge says 1, and
// every node in standbys says 0.
func waitActive(t *testing.T, bin string, want *standbyNode, standbys ...*standbyNode) {
	t.Helper()
	pid := fmt.Sprintf(":%d", want.p.cmd.Process.Pid)
	deadline := time.Now().Add(time.Minute)
	for {
		by, gauge := capturedBy(t, bin, want.cfg), want.active(t)
		ok := strings.HasPrefix(by, "backflow capture ") && strings.HasSuffix(by, pid) && gauge == 1
		for _, s := range standbys {
			ok = ok && s.active(t) == 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status shows %q, gauge %v; want pid %d active; log:\n%s", by, gauge, want.p.cmd.Process.Pid, want.p.tail())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestStandbyCaptureTakesOver runs two capture processes for one slot: the first captures, the
// second waits. Under a steady write load the first is SIGKILLed; the second takes over within
// seconds, and afterwards the topic holds every committed change in order per key (at most a
// re-sent suffix, as after any restart) and each key's last state equals the table. Status and
// the backflow_capture_active gauge show which process is active before and after.
//
// The workload starts once the first process holds the capture lock, which can be before it has
// created its slot: what the workload commits until then is on the topic as the rows it left,
// read by the initial snapshot at the slot's consistent point, and not as changes.
// checkCrashTopic checks that those reads are the table at one commit and the changes go on
// from there.
func TestStandbyCaptureTakesOver(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL); ALTER TABLE public.w REPLICA IDENTITY FULL`); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, bin, pg.URL("postgres"), kf.Brokers())
	waitActive(t, bin, a)
	b := startNode(t, bin, pg.URL("postgres"), kf.Brokers())
	waitActive(t, bin, a, b)

	w := newWorkload(40_000)
	werr := make(chan error, 1)
	go func() { werr <- w.run(ctx, pg) }()
	for w.progress() < 15_000 {
		select {
		case err := <-werr:
			t.Fatalf("workload stopped early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	a.p.kill(t)
	killed := time.Now()
	waitActive(t, bin, b)
	took := time.Since(killed)
	t.Logf("the standby took over %s after the kill", took.Round(10*time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("takeover took %s; want a few seconds", took)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, pg, "backflow", currentLSN(t, pg), b.p)

	recs := readTopic(t, kf.Brokers(), "wh", "wh.public.w")
	checkCrashTopic(t, recs, w, 0, 0, false)
	last := map[int32]int32{} // readTopic keeps each partition's order, hence each key's
	for _, r := range recs {
		switch {
		case r.ev == nil:
		case r.ev.Op == change.OpDelete:
			delete(last, r.ev.Before["id"].(int32))
		default:
			last[r.ev.After["id"].(int32)] = r.ev.After["v"].(int32)
		}
	}
	topic := make([]string, 0, len(last))
	for id, v := range last {
		topic = append(topic, fmt.Sprintf("%d:%d", id, v))
	}
	if table := rows(t, pg, "SELECT id || ':' || v FROM public.w"); diff(topic, table) != "" {
		t.Fatalf("the topic's last states (%d keys) differ from the table (%d rows): %s", len(topic), len(table), diff(topic, table))
	}
}
