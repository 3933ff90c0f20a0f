package capture

import (
	"errors"
	"testing"

	"github.com/jackc/pglogrepl"
)

// TestGuardParksAfterRuns: a record that fails runs in a row is parked by the run after the
// parkAfter-th; a failure elsewhere, or of no WAL record, starts the count again.
func TestGuardParksAfterRuns(t *testing.T) {
	var g guard
	fail := func(at pglogrepl.LSN) { g.failed(walError{at: at, err: errors.New("bad record")}) }
	for range parkAfter - 1 {
		fail(100)
	}
	if g.parks(100) {
		t.Fatalf("parks after %d runs, want %d", parkAfter-1, parkAfter)
	}
	fail(100)
	if !g.parks(100) || g.parks(200) {
		t.Fatalf("after %d runs at 100: parks(100)=%v parks(200)=%v, want true, false", parkAfter, g.parks(100), g.parks(200))
	}
	fail(200)
	if g.parks(100) || g.parks(200) {
		t.Fatal("a failure at another record must start the count again")
	}
	if _, _, ok := g.failed(errors.New("broker down")); ok {
		t.Fatal("a failure of no WAL record counted as one")
	}
}
