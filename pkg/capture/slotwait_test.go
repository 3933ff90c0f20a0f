package capture_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestSlotCreationNamesWhatItWaitsFor: a first start of capture while a session holds a written,
// uncommitted transaction waits for it (PostgreSQL creates the slot only after), and says so,
// naming the session; once it commits, capture goes on, its row included.
func TestSlotCreationNamesWhatItWaitsFor(t *testing.T) {
	e := newEnv(t, "public.t")
	e.exec("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	logs := observeLogs(e)
	ctx := context.Background()
	conn, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "INSERT INTO public.t VALUES (1, 'open') RETURNING pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	e.start()
	eventually(t, "a warning naming the open transaction", func() error {
		for _, l := range logs.FilterMessageSnippet("creating the replication slot waits for transactions").All() {
			if strings.Contains(fmt.Sprint(l.ContextMap()["transactions"]), fmt.Sprintf("pid %d ", pid)) {
				return nil
			}
		}
		return notYet("no warning naming pid %d", pid)
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitEvents("wh.public.t", 1)
}
