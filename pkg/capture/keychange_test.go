package capture_test

import (
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
)

// TestKeyChangeIsWarned: a table whose key columns change in place (a new primary key) has its
// rows' later records keyed, and partitioned, by the new key, apart from their older ones: a
// replay from before the change could apply them in the wrong order. Capture says so, naming
// both keys and what to do.
func TestKeyChangeIsWarned(t *testing.T) {
	e := newEnv(t, "public.k")
	core, logs := observer.New(zap.WarnLevel)
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
	e.exec(`CREATE TABLE public.k (id int PRIMARY KEY, code text NOT NULL UNIQUE, n int);
		INSERT INTO public.k SELECT g, 'c' || g, g FROM generate_series(1, 20) g`)
	e.start()
	e.waitEvents("wh.public.k", 20)
	e.exec(`UPDATE public.k SET n = 0 WHERE id = 1`) // the same key: no warning
	e.waitEvents("wh.public.k", 21)
	if n := logs.FilterMessageSnippet("key columns changed").Len(); n != 0 {
		t.Fatalf("%d key change warnings before any key change", n)
	}
	e.exec(`ALTER TABLE public.k DROP CONSTRAINT k_pkey, ADD PRIMARY KEY (code); UPDATE public.k SET n = 1 WHERE id = 1`)
	eventually(t, "the key change warned", func() error {
		for _, l := range logs.FilterMessageSnippet("key columns changed").All() {
			f := l.ContextMap()
			if f["table"] == "public.k" && fmt.Sprint(f["key_before"]) == "[id]" && fmt.Sprint(f["key_after"]) == "[code]" {
				return nil
			}
		}
		return notYet("no warning naming public.k and both keys")
	})
}
