package main

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/replay"
)

var (
	dryTotalRe = regexp.MustCompile(`total (\d+) records`)
	readRe     = regexp.MustCompile(`read (\d+) records: (\d+) applied`)
)

func number(t *testing.T, re *regexp.Regexp, out string, group int) int {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not match %s:\n%s", re, out)
	}
	n, _ := strconv.Atoi(m[group])
	return n
}

// TestReplay covers backfills from the log: from earliest into an emptied target (dry-run counts
// equal what the run reads), from a time (only later changes), an interrupted replay resuming
// without re-reading finished work, a group reset, and a dead-letter re-drive after a fix.
func TestReplay(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	capt := e.start("capture")
	snk := e.start("sink")
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 3000) g;
		UPDATE public.w SET v = v + 1 WHERE id % 3 = 0; DELETE FROM public.w WHERE id % 10 = 0`); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	snk.kill(t)
	srcRows := func() []string { return rows(t, e.src, "SELECT id, v FROM public.w") }
	dstRows := func() []string { return rows(t, e.dst, "SELECT id, v FROM public.w_copy") }
	emptyTarget := func() {
		if err := e.dst.Exec(ctx, "TRUNCATE public.w_copy; TRUNCATE public.applied"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("earliest rebuilds an emptied target; dry run counts match", func(t *testing.T) {
		emptyTarget()
		out, code := runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--from", "earliest", "--dry-run")
		if code != 0 {
			t.Fatalf("dry run exit %d:\n%s", code, out)
		}
		planned := number(t, dryTotalRe, out, 1)
		if got := rows(t, e.dst, "SELECT count(*) FROM public.w_copy"); got[0] != "0" {
			t.Fatalf("dry run changed the target: %v rows", got)
		}
		out, code = runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--from", "earliest")
		if code != 0 {
			t.Fatalf("replay exit %d:\n%s", code, out)
		}
		if read := number(t, readRe, out, 1); read != planned {
			t.Errorf("replay read %d records, dry run said %d", read, planned)
		}
		if src, dst := srcRows(), dstRows(); strings.Join(src, "|") != strings.Join(dst, "|") {
			t.Fatalf("replayed target differs from source: %s", diff(src, dst))
		}
	})

	t.Run("from a time applies only later changes", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		mark := time.Now().UTC().Truncate(time.Second).Add(time.Second)
		time.Sleep(time.Until(mark) + 100*time.Millisecond)
		if err := e.src.Exec(ctx, `UPDATE public.w SET v = v + 1000 WHERE id <= 100`); err != nil {
			t.Fatal(err)
		}
		waitSlotAt(t, e.src, "backflow", currentLSN(t, e.src), capt)
		emptyTarget()
		out, code := runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--from", mark.Format(time.RFC3339))
		if code != 0 {
			t.Fatalf("replay exit %d:\n%s", code, out)
		}
		want := rows(t, e.src, "SELECT id, v FROM public.w WHERE id <= 100")
		if dst := dstRows(); strings.Join(want, "|") != strings.Join(dst, "|") {
			t.Fatalf("replay from %s applied %d rows, want exactly the 90 rows changed after it: %s", mark, len(dst), diff(want, dst))
		}
	})

	t.Run("an interrupted replay resumes", func(t *testing.T) {
		emptyTarget()
		// A rate-limited copy of the pipeline makes the replay slow enough to interrupt.
		body, _ := os.ReadFile(e.config)
		slow := writeConfig(t, strings.Replace(string(body), "    batch: {max_records: 500, max_wait: 20ms}",
			"    batch: {max_records: 100, max_wait: 20ms}\n    rate_limit: 1000/s", 1))
		from := "wh.public.w:0:0,wh.public.w:1:0,wh.public.w:2:0,wh.public.w:3:0"
		args := []string{"replay", "-c", slow, "--sink", "w-copy", "--from", from}
		p := startProcess(t, e.bin, args...)
		parsed, _ := replay.ParseFrom(from)
		group := replay.GroupName("w-copy", parsed)
		waitGroupCommitted(t, e.kf.Brokers(), group)
		p.kill(t)
		out, code := runBinary(t, e.bin, nil, args...)
		if code != 0 || !strings.Contains(out, "resuming") {
			t.Fatalf("second run exit %d, not resuming group %s:\n%s", code, group, out)
		}
		out2, _ := runBinary(t, e.bin, nil, append(args, "--dry-run")...)
		if n := number(t, dryTotalRe, out2, 1); n != 0 {
			t.Errorf("after completion the replay still plans %d records", n)
		}
		if src, dst := srcRows(), dstRows(); strings.Join(src, "|") != strings.Join(dst, "|") {
			t.Fatalf("resumed replay left the target different: %s", diff(src, dst))
		}
		// Finished work is not applied again: no row version was written twice.
		if dups := rows(t, e.dst, "SELECT id, v, count(*) FROM public.applied GROUP BY id, v HAVING count(*) > 1"); len(dups) > 0 {
			t.Errorf("the resumed replay applied %d row versions again, e.g. %v", len(dups), dups[0])
		}
	})

	t.Run("reset moves the sink's own group", func(t *testing.T) {
		emptyTarget()
		// The killed sink stays a member until its session times out: the reset refuses until then.
		var out string
		code := 1
		for deadline := time.Now().Add(30 * time.Second); code != 0 && time.Now().Before(deadline); time.Sleep(time.Second) {
			out, code = runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--from", "earliest", "--reset")
		}
		if code != 0 {
			t.Fatalf("reset exit %d:\n%s", code, out)
		}
		// The sink then tells a position an operator chose from one where it stopped applying,
		// which it checks against delete.retention.ms (TestDeletesAtRisk).
		if marked := resetMarked(t, e.kf.Brokers(), "w-copy"); marked == 0 {
			t.Errorf("reset committed no offset marked %q", kafka.ResetCommitMetadata)
		}
		snk = e.start("sink")
		e.waitCaughtUp(capt, snk)
		if src, dst := srcRows(), dstRows(); strings.Join(src, "|") != strings.Join(dst, "|") {
			t.Fatalf("after a reset the sink left the target different: %s", diff(src, dst))
		}
		out, code = runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--from", "earliest", "--reset")
		if code == 0 || !strings.Contains(out, "live member") {
			t.Errorf("reset with a live sink: exit %d, want a refusal naming live members:\n%s", code, out)
		}
		snk.kill(t)
	})

	t.Run("a replay beside the live sink never moves a key backwards", func(t *testing.T) {
		snk = e.start("sink")
		// The live sink must be applying before the replay starts (a restarted member waits for
		// the group to drop the killed one): wait until a marker row arrives.
		if err := e.src.Exec(ctx, `INSERT INTO public.w VALUES (4000, 1)`); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); rows(t, e.dst, "SELECT count(*) FROM public.w_copy WHERE id = 4000")[0] != "1"; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the live sink never applied the marker; log:\n%s", snk.tail())
			}
		}
		body, _ := os.ReadFile(e.config)
		slow := writeConfig(t, strings.Replace(string(body), "    batch: {max_records: 500, max_wait: 20ms}",
			"    batch: {max_records: 100, max_wait: 20ms}\n    rate_limit: 500/s", 1))
		// A start of its own (a time before everything): a fresh replay group, not the finished one.
		rp := startProcess(t, e.bin, "replay", "-c", slow, "--sink", "w-copy", "--from", "2000-01-01T00:00:00Z")
		// While the replay re-applies old history, newer changes reach the live sink.
		for i := 1; i <= 20; i++ {
			if err := e.src.Exec(ctx, `UPDATE public.w SET v = v + 1 WHERE id % 20 = $1`, i%20); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := rp.cmd.Wait(); err != nil {
			t.Fatalf("replay: %v\n%s", err, rp.tail())
		}

		e.waitCaughtUp(capt, snk)
		if src, dst := srcRows(), dstRows(); strings.Join(src, "|") != strings.Join(dst, "|") {
			t.Fatalf("an older value was left in the target: %s", diff(src, dst))
		}
		snk.kill(t)
	})

	t.Run("dead-letter re-drive applies fixed records", func(t *testing.T) {
		snk = e.start("sink")
		if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, -g FROM generate_series(5001, 5005) g`); err != nil {
			t.Fatal(err)
		}
		e.waitCaughtUp(capt, snk)
		if n := len(readDLQ(t, e.kf.Brokers(), "w-copy")); n != 5 {
			t.Fatalf("%d dead letters, want 5", n)
		}
		out, code := runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--dlq")
		if code == 0 || strings.Count(out, "still failing") != 5 {
			t.Errorf("re-drive before the fix: exit %d, want 5 still failing:\n%s", code, out)
		}
		if err := e.dst.Exec(ctx, `ALTER TABLE public.w_copy DROP CONSTRAINT w_copy_v_check`); err != nil {
			t.Fatal(err)
		}
		out, code = runBinary(t, e.bin, nil, "replay", "-c", e.config, "--sink", "w-copy", "--dlq")
		if code != 0 || strings.Contains(out, "still failing") {
			t.Fatalf("re-drive after the fix: exit %d:\n%s", code, out)
		}
		if got := rows(t, e.dst, "SELECT count(*) FROM public.w_copy WHERE id > 5000"); got[0] != "5" {
			t.Errorf("%s fixed rows in the target, want 5", got[0])
		}
		if n := len(readDLQ(t, e.kf.Brokers(), "w-copy")); n != 5 {
			t.Errorf("the re-drive changed the dead-letter topic: %d records", n)
		}
	})
}

// waitGroupCommitted waits until group has committed offsets.
// resetMarked counts the partitions whose commit in group replay --reset wrote.
func resetMarked(t *testing.T, brokers []string, group string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Metadata == kafka.ResetCommitMetadata {
			n++
		}
	})
	return n
}

func waitGroupCommitted(t *testing.T, brokers []string, group string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if offs, err := adm.FetchOffsets(context.Background(), group); err == nil && len(offs) > 0 {
			return
		}
	}
	t.Fatalf("replay group %s never committed progress", group)
}
