package capture

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestRefreshRereadsUntilItSeesTheStream: a full refresh's chunk read whose snapshot does not see
// the last transaction the stream decoded before the refresh began is made again, until one
// sees it (and then none after), and never more than maxRereads times.
func TestRefreshRereadsUntilItSeesTheStream(t *testing.T) {
	// xids 100 and up are not visible; 90 is in progress for the snapshot.
	snap := pgSnapshot{xmin: 90, xmax: 100, xip: map[uint32]bool{90: true}}
	for _, tc := range []struct {
		name    string
		after   uint32
		rereads int // made before the refresh goes on
	}{
		{"no transaction before", 0, 0},
		{"visible", 95, 0},
		{"committed before the snapshot's xmin", 50, 0},
		{"not visible yet", 100, maxRereads},
		{"in progress for the snapshot", 90, maxRereads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			r := &refresh{log: zap.New(core), after: tc.after}
			n := 0
			for r.rereadFor(snap) {
				if n++; n > 2*maxRereads {
					t.Fatal("reads again without end")
				}
			}
			if n != tc.rereads {
				t.Errorf("read again %d times, want %d", n, tc.rereads)
			}
			if r.rereadFor(snap) || r.rereadFor(pgSnapshot{}) {
				t.Error("read again after going on")
			}
			if warned := logs.Len() > 0; warned != (tc.rereads == maxRereads) {
				t.Errorf("warned %v after %d rereads", warned, n)
			}
		})
	}
	r := &refresh{after: 100}
	if !r.rereadFor(snap) || r.rereadFor(pgSnapshot{xmin: 101, xmax: 101, xip: map[uint32]bool{}}) || r.rereadFor(snap) {
		t.Error("a refresh whose later read saw its transaction must go on, and not read again")
	}
}
