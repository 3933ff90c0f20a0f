package capture_test

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestFailingCaptureShows: capture whose broker is away fails run after run; its metrics say so
// (status turns them into a problem) until it runs again and makes progress.
func TestFailingCaptureShows(t *testing.T) {
	e := newEnv(t, "public.t")
	e.exec("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	e.kf.Stop()
	m := observe.NewMetrics()
	ctx, cancel := context.WithCancel(context.Background())
	c := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t)), capture.WithMetrics(m))
	done := make(chan error, 1)
	go func() { done <- c.RunWithRetry(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "capture failing", func() error {
		if f := m.CaptureFailing(); f == nil || f.Runs < 2 {
			return notYet("failing %+v", f)
		}
		return nil
	})
	if err := e.kf.Start(); err != nil {
		t.Fatal(err)
	}
	e.exec("INSERT INTO public.t VALUES (1, 'back')")
	e.waitEvents("wh.public.t", 1)
	eventually(t, "capture no longer failing", func() error {
		if f := m.CaptureFailing(); f != nil {
			return notYet("failing %+v", f)
		}
		return nil
	})
}
