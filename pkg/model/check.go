package model

import (
	"context"
	"fmt"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/config"
)

// Check tries the model's query without running it, writing nothing: it parses, its tables and
// columns exist, its key columns are in its result, and the role may read what it reads
// (EXPLAIN checks privileges as a run would). `backflow validate --connect` calls it.
func Check(ctx context.Context, cfg *config.Pipeline, name string) error {
	m, ok := cfg.Model(name)
	if !ok {
		return fmt.Errorf("no model named %q in the pipeline", name)
	}
	r := &Runner{cfg: cfg}
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := describe(ctx, conn, capture.NewTypeMapper(conn), m)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "EXPLAIN "+res.sql); err != nil {
		return fmt.Errorf("model %s: query: %w", m.Name, err)
	}
	return nil
}
