package capture

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestStaleKeyThatCannotBeDecoded: a key the topic holds that no schema decodes cannot be
// deleted; the refresh says so (log, count) and finishes instead of failing capture, which would
// only repeat the refresh and the same failure at every restart.
func TestStaleKeyThatCannotBeDecoded(t *testing.T) {
	r := &refresh{log: zap.NewNop(), topic: "wh.public.t", seen: map[string]struct{}{}, result: &sweepResult{
		live:   map[string]struct{}{"garbage": {}},
		decode: func(context.Context, []byte) (change.Row, error) { return nil, errors.New("unknown schema") },
	}}
	keys, ready, err := r.stale(context.Background())
	if err != nil || !ready || len(keys) != 0 || r.undecodable != 1 {
		t.Fatalf("stale() = %v, %v, %v with %d undecodable; want no keys, ready, no error, 1 undecodable", keys, ready, err, r.undecodable)
	}
}
