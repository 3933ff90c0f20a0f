package capture

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestStaleKeyThatCannotBeDecoded: a key the topic holds that no schema decodes cannot be
// deleted; the refresh says so (log, count) and finishes instead of failing capture, which would
// only repeat the refresh and the same failure at every restart. Past the first few, such keys
// are counted, not logged: a table whose key changed has one per row.
func TestStaleKeyThatCannotBeDecoded(t *testing.T) {
	for _, n := range []int{1, undeletableLogged, 40} {
		core, logs := observer.New(zap.ErrorLevel)
		live := map[string]struct{}{}
		for i := range n {
			live[fmt.Sprint("garbage", i)] = struct{}{}
		}
		r := &refresh{log: zap.New(core), topic: "wh.public.t", seen: map[string]struct{}{}, result: &sweepResult{
			live:   live,
			decode: func(context.Context, []byte) (change.Row, error) { return nil, errors.New("unknown schema") },
		}}
		keys, ready, err := r.stale(context.Background())
		if err != nil || !ready || len(keys) != 0 || r.undeletable != n {
			t.Fatalf("%d keys: stale() = %v, %v, %v with %d undeletable; want no keys, ready, no error, %d undeletable", n, keys, ready, err, r.undeletable, n)
		}
		wantLogged := min(n, undeletableLogged)
		if n > undeletableLogged {
			wantLogged++ // the line that says the rest are only counted
		}
		if logs.Len() != wantLogged {
			t.Errorf("%d keys: %d errors logged, want %d", n, logs.Len(), wantLogged)
		}
	}
}
