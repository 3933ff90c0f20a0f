package capture_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
)

// TestPartitionChangesReachTheTopic: a partitioned table's publication sends its rows' changes but
// not what changes a partition as a whole: a partition truncated (pgoutput leaves that truncate
// out when publishing through the root), detached or dropped takes rows away, one attached with
// rows brings them in, all without a change in the log. Capture refreshes the table, so the topic
// ends with the table's rows, deletes included, and streams later changes as before.
func TestPartitionChangesReachTheTopic(t *testing.T) {
	for _, tc := range []struct{ name, ddl string }{
		{"truncated", "TRUNCATE public.m_us"},
		{"detached", "ALTER TABLE public.m DETACH PARTITION public.m_us"},
		{"dropped", "DROP TABLE public.m_us"},
		{"every partition dropped", "DROP TABLE public.m_us; DROP TABLE public.m_eu"},
		{"attached with rows", `CREATE TABLE public.m_ap (LIKE public.m INCLUDING ALL);
			INSERT INTO public.m_ap SELECT g, 'ap', g FROM generate_series(101, 130) g;
			ALTER TABLE public.m ATTACH PARTITION public.m_ap FOR VALUES IN ('ap')`},
		{"truncated and reloaded", `BEGIN; TRUNCATE public.m_us;
			INSERT INTO public.m SELECT g, 'us', g * 2 FROM generate_series(41, 50) g; COMMIT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.m")
			e.exec(`CREATE TABLE public.m (id int, region text, n int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE public.m_eu PARTITION OF public.m FOR VALUES IN ('eu');
				CREATE TABLE public.m_us PARTITION OF public.m FOR VALUES IN ('us');
				INSERT INTO public.m SELECT g, CASE WHEN g <= 40 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 80) g`)
			e.start()
			e.waitEvents("wh.public.m", 80)
			e.exec(tc.ddl)
			eventually(t, "the topic equal to the table", func() error {
				return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
			})
			e.exec(`UPDATE public.m SET n = 7 WHERE id = 3; DELETE FROM public.m WHERE id = 4`)
			eventually(t, "later changes in the topic", func() error {
				return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
			})
		})
	}
}

// TestPartitionTruncatedWhileStopped: the partitions are kept in the state topic, so a
// partition truncated while capture is stopped is found at its next start.
func TestPartitionTruncatedWhileStopped(t *testing.T) {
	e := newEnv(t, "public.m")
	e.exec(`CREATE TABLE public.m (id int, region text, n int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE public.m_eu PARTITION OF public.m FOR VALUES IN ('eu');
		CREATE TABLE public.m_us PARTITION OF public.m FOR VALUES IN ('us');
		INSERT INTO public.m SELECT g, CASE WHEN g <= 40 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 80) g`)
	stop := e.start()
	e.waitEvents("wh.public.m", 80)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.exec(`TRUNCATE public.m_us`)
	e.start()
	eventually(t, "the topic equal to the table", func() error {
		return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
	})
}

// TestEmptyPartitionReadsNothing: a partition created empty (next month's) changes no row, so
// nothing is read again.
func TestEmptyPartitionReadsNothing(t *testing.T) {
	e := newEnv(t, "public.m")
	core, logs := observer.New(zap.InfoLevel)
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
	e.exec(`CREATE TABLE public.m (id int, region text, n int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE public.m_eu PARTITION OF public.m FOR VALUES IN ('eu');
		INSERT INTO public.m SELECT g, 'eu', g FROM generate_series(1, 60) g`)
	e.start()
	e.waitEvents("wh.public.m", 60)
	e.exec(`CREATE TABLE public.m_us PARTITION OF public.m FOR VALUES IN ('us')`)
	eventually(t, "the new partition seen", func() error {
		if logs.FilterMessageSnippet("partitions created empty").Len() == 0 {
			return notYet("not yet")
		}
		return nil
	})
	// A read queued by the check would go out before an update made after it.
	if reads := e.readsAfterAnUpdate(); reads != 60 || logs.FilterMessageSnippet("refreshing it").Len() != 0 {
		t.Errorf("%d snapshot reads, want the initial snapshot's 60 only, and no refresh", reads)
	}
}

// TestPartitionTruncatedDuringSnapshot: a partition truncated while the initial snapshot runs
// (the TRUNCATE waits for the snapshot's reads, and commits as they end) is in neither the
// snapshot nor the log. The relation watch takes its baseline before the snapshot, so its first
// check finds the truncated partition and refreshes the table.
func TestPartitionTruncatedDuringSnapshot(t *testing.T) {
	e := newEnv(t, "public.m")
	e.opts = append(e.opts, capture.WithKafkaOpts(kgo.WithHooks(slowProduce{})))
	e.exec(`CREATE TABLE public.m (id int, region text, n int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE public.m_eu PARTITION OF public.m FOR VALUES IN ('eu');
		CREATE TABLE public.m_us PARTITION OF public.m FOR VALUES IN ('us');
		INSERT INTO public.m SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 1000) g`)
	e.start()
	e.waitEvents("wh.public.m", 1) // the snapshot is under way
	e.exec(`TRUNCATE public.m_us`)
	eventually(t, "the topic equal to the table", func() error {
		return diffStates(columnState(e.tryEvents("wh.public.m"), "n"), e.tableColumn("public.m", "n"))
	})
}

// slowProduce makes capture take 2 ms to hand each record to the client: a snapshot of a few
// thousand rows then lasts long enough for a test to act while it runs.
type slowProduce struct{}

func (slowProduce) OnProduceRecordBuffered(*kgo.Record) { time.Sleep(2 * time.Millisecond) }
