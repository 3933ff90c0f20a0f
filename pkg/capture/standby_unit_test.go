package capture

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A slot still read by the previous holder's connection is a transient failure: RunWithRetry
// must start again, not give up as it does on setup errors.
func TestSlotBusyIsTransient(t *testing.T) {
	busy := fmt.Errorf("start replication from slot %q: %w", "backflow",
		&pgconn.PgError{Code: "55006", Message: `replication slot "backflow" is active for PID 4242`})
	if !slotBusy(busy) || IsSetupError(busy) {
		t.Fatalf("slotBusy %v, IsSetupError %v; want a transient slot-busy error", slotBusy(busy), IsSetupError(busy))
	}
	if slotBusy(&pgconn.PgError{Code: "42704"}) || slotBusy(nil) {
		t.Fatal("other errors are not slot-busy")
	}
}
