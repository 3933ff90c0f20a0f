package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
)

// RequestSnapshot asks the running capture of cfg to re-snapshot table (schema.table), only the
// rows matching where when it is not empty, by inserting a signal row into the signal table.
// It returns the number of rows the re-snapshot will read (an estimate: rows may change meanwhile).
func RequestSnapshot(ctx context.Context, cfg *config.Pipeline, table, where string, opts ...RequestOpt) (int64, error) {
	req := SnapshotRequest{Table: table, Where: where, Reason: ReasonRequested}
	for _, o := range opts {
		o(&req)
	}
	if req.FullRefresh && where != "" {
		return 0, fmt.Errorf("a full refresh re-reads the whole table: it takes no --where")
	}
	pg := cfg.Source.Postgres
	if pg.SignalTable == "" {
		return 0, fmt.Errorf("source.postgres.signal_table is empty: re-snapshots need it")
	}
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		return 0, fmt.Errorf("--table %q: expected schema.table", table)
	}
	c := New(cfg)
	conn, err := c.connect(ctx, false)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := c.admitRequest(ctx, newCatalog(conn, pg.Keys), table, where); err != nil {
		return 0, err
	}
	cond := "true"
	if where != "" {
		cond = "(" + where + ")"
	}
	var rows int64
	q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", quoteTable(schema, name), cond)
	if err := conn.QueryRow(ctx, q).Scan(&rows); err != nil {
		return 0, fmt.Errorf("check %s with the given condition: %w", table, err)
	}
	data, _ := json.Marshal(req)
	sigSchema, sigTable, _ := strings.Cut(pg.SignalTable, ".")
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (type, data) VALUES ('snapshot', $1)", quoteTable(sigSchema, sigTable)), string(data)); err != nil {
		return 0, fmt.Errorf("write the signal into %s (is capture running, and has it created it?): %w", pg.SignalTable, err)
	}
	return rows, nil
}

// RequestOpt adjusts a re-snapshot request.
type RequestOpt func(*SnapshotRequest)

// FullRefresh makes the re-snapshot also delete, in the topic and every target, the keys the
// table no longer has: the targets end equal to the table.
func FullRefresh() RequestOpt { return func(r *SnapshotRequest) { r.FullRefresh = true } }

// ReSnapshotState reads the re-snapshot queue capture keeps in Kafka for the pipeline's slot.
func ReSnapshotState(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt) (*ReSnapshots, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	store := newStateStore(cl, kadm.NewClient(cl), kopts, cfg.Kafka.CaptureStateTopic(), cfg.Source.Postgres.Slot)
	return store.loadReSnapshots(ctx)
}
