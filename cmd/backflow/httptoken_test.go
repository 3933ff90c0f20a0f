package main

import (
	"context"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestStatusAsksARunningProcessWithItsToken checks that `backflow status` reads a running
// process's /status.json when that listener requires http.token.
func TestStatusAsksARunningProcessWithItsToken(t *testing.T) {
	const token = "listener-t0ken"
	status := func(context.Context) (*observe.Status, error) {
		return &observe.Status{Sinks: []observe.SinkStatus{{Name: "crm"}}}, nil
	}
	srv := observe.NewServer("127.0.0.1:0", nil, status, nil, observe.WithToken(token), observe.WithSampleEvery(time.Hour))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	ctx := context.Background()
	if _, err := fetchRunningStatus(ctx, srv.Addr(), ""); err == nil {
		t.Fatal("the status was served without the token")
	}
	st, err := fetchRunningStatus(ctx, srv.Addr(), token)
	if err != nil || len(st.Sinks) != 1 {
		t.Fatalf("with the token: %v, %+v", err, st)
	}
}
