package capture_test

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
)

// TestTableDroppedFromPublication: a captured table whose changes the publication stops sending
// under its name, while capture runs or while it is stopped, has none of them reach its topic
// meanwhile:
//   - taken out of the publication (ALTER PUBLICATION … DROP TABLE);
//   - a partitioned table, when a DBA turns publish_via_partition_root off: PostgreSQL sends its
//     changes under its partitions' names, to topics no sink of the table reads.
//
// Capture puts it back, says which it was, and refreshes the table in full, so the topic ends
// equal to the table, deletes included, and later changes stream as before.
func TestTableDroppedFromPublication(t *testing.T) {
	const plain = `CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 50) g`
	const partitioned = `CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL) PARTITION BY RANGE (id);
		CREATE TABLE public.items_a PARTITION OF public.items FOR VALUES FROM (0) TO (40);
		CREATE TABLE public.items_b PARTITION OF public.items FOR VALUES FROM (40) TO (100);
		INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 50) g`
	for _, how := range []struct {
		name, create, takeOut, said string
	}{
		{"dropped from the publication", plain, `ALTER PUBLICATION backflow DROP TABLE public.items`, "out of the publication"},
		{"published through its partitions", partitioned, `ALTER PUBLICATION backflow SET (publish_via_partition_root = false)`,
			"publish_via_partition_root was turned off"},
	} {
		for _, when := range []struct {
			name    string
			stopped bool
		}{{"while running", false}, {"while stopped", true}} {
			t.Run(how.name+" "+when.name, func(t *testing.T) {
				e := newEnv(t, "public.items", "public.other")
				core, logs := observer.New(zap.WarnLevel)
				e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
				e.exec(how.create)
				e.exec(`CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL)`)
				stop := e.start()
				e.converges("wh.public.items", "public.items")
				if when.stopped {
					if err := stop(); err != nil {
						t.Fatalf("capture stopped with %v, want nil", err)
					}
				}
				e.exec(how.takeOut)
				e.exec(`UPDATE public.items SET v = 'unpublished' WHERE id IN (3, 45); DELETE FROM public.items WHERE id = 4;
					INSERT INTO public.items VALUES (60, 'new'); INSERT INTO public.other VALUES (1, 'still captured')`)
				if when.stopped {
					e.start()
				}
				e.converges("wh.public.other", "public.other")
				e.converges("wh.public.items", "public.items")
				e.exec(`UPDATE public.items SET v = 'later' WHERE id IN (5, 60)`)
				e.converges("wh.public.items", "public.items")
				if logs.FilterMessageSnippet(how.said).Len() == 0 {
					t.Errorf("no warning says %q; warnings: %v", how.said, logs.All())
				}
			})
		}
	}
}
