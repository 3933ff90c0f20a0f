package capture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/config"
)

// TestPublicationDroppedUnderCapture: a publication dropped while capture runs (and created
// again, by an operator or by capture's next start) leaves the slot unreadable past the drop:
// PostgreSQL decodes every change with the publications of its time, and fails on the first one
// made while it was missing. With on_slot_loss: resync, capture treats the slot as lost: a new
// slot and a full refresh of every table, so the topic ends equal to the table, and changes
// stream again (it used to restart forever at the same place). With fail, it stops, saying why.
func TestPublicationDroppedUnderCapture(t *testing.T) {
	for _, onLoss := range []string{config.OnSlotLossResync, config.OnSlotLossFail} {
		t.Run(onLoss, func(t *testing.T) {
			e := newEnv(t, "public.items")
			e.cfg.Source.Postgres.OnSlotLoss = onLoss
			e.exec(`CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 50) g`)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t))).RunWithRetry(ctx) }()
			e.converges("wh.public.items", "public.items")
			// One transaction: capture's publication check, which adds a table missing from its
			// publication back, cannot run between the drop and the changes (it once did, and
			// the changes then came after the publication was there again).
			e.exec(`DROP PUBLICATION backflow;
				UPDATE public.items SET v = 'while dropped' WHERE id = 3; DELETE FROM public.items WHERE id = 4`)
			if onLoss == config.OnSlotLossFail {
				err := <-done
				if !capture.IsSetupError(err) || !strings.Contains(err.Error(), `publication "backflow" was dropped`) || !strings.Contains(err.Error(), "on_slot_loss: resync") {
					t.Fatalf("capture ended with %v; want a setup error naming the dropped publication and the way out", err)
				}
				return
			}
			e.converges("wh.public.items", "public.items")
			e.exec(`UPDATE public.items SET v = 'later' WHERE id IN (5, 6)`)
			e.converges("wh.public.items", "public.items")
			cancel()
			<-done
		})
	}
}
