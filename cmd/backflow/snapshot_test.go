package main

import (
	"context"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestSnapshotCommand re-snapshots a table whose rows were never streamed through
// `backflow snapshot`, which waits until the running capture has read them all.
func TestSnapshotCommand(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 2500) g`); err != nil {
		t.Fatal(err)
	}
	never := writeConfig(t, strings.Replace(pipelineYAML(e.src.URL("postgres"), e.kf.Brokers(), ""),
		"    snapshot_chunk: 1000", "    snapshot_chunk: 1000\n    snapshot: never", 1))
	p := startProcess(t, e.bin, "capture", "-c", never)
	waitSlotAt(t, e.src, "backflow", currentLSN(t, e.src), p)
	out, code := runBinary(t, e.bin, nil, "snapshot", "-c", never, "--table", "public.w", "--where", "id > 500")
	if code != 0 || !strings.Contains(out, "done: 2000 rows") {
		t.Fatalf("snapshot exit %d:\n%s\ncapture log:\n%s", code, out, p.tail())
	}
	reads := 0
	for _, r := range readTopic(t, e.kf.Brokers(), "wh", "wh.public.w") {
		if r.ev != nil && r.ev.Op == change.OpRead {
			reads++
			if r.ev.After["id"].(int32) <= 500 || r.ev.Source.Snapshot != "incremental" {
				t.Fatalf("unexpected re-snapshot read: %v (%s)", r.ev.After, r.ev.Source.Snapshot)
			}
		}
	}
	if reads != 2000 {
		t.Fatalf("%d re-snapshot reads on the topic, want 2000", reads)
	}
	// A condition that is more than a plain predicate on the table's columns is refused, before
	// any signal is written.
	out, code = runBinary(t, e.bin, nil, "snapshot", "-c", never, "--table", "public.w", "--where", "id > 0) OR (pg_sleep(5) IS NULL")
	if code != 1 || !strings.Contains(out, `position 7: ')' closes no '('`) {
		t.Fatalf("snapshot with an injected where: exit %d:\n%s", code, out)
	}
}
