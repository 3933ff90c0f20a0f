package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// A replication slot keeps every change since its confirmed position. When it disappears while
// capture is down (a failover to a replica without it, an operator's drop, invalidation by
// max_slot_wal_keep_size), a new slot starts at the current position and the changes made in
// between are gone. Capture keeps a record of its slot in the state topic, so it knows at start
// that the slot it was reading is gone and never carries on silently: by on_slot_loss it stops
// with a message that says how to repair, or it resyncs (a new slot and a full refresh of every
// table, which makes the targets equal to the tables, deletes included). A slot that is there
// but moved on its own (dropped and created again, advanced by hand) skipped changes the same
// way, and one behind a server whose WAL went back (a database restored from a snapshot of its
// disk) re-sends a past the topics have already moved beyond: both are resynced too (slotLoss).

// slotLossRepair ends the message of a lost slot with on_slot_loss: fail.
const slotLossRepair = ". To repair: start capture with source.postgres.on_slot_loss: resync, which refreshes every table in " +
	"full (deletes included; from a new slot if the slot is gone); nothing is done until then"

// slotRecord is what capture keeps about its slot.
type slotRecord struct {
	Slot         string    `json:"slot"`
	SystemID     string    `json:"system_id,omitempty"`
	ConfirmedLSN string    `json:"confirmed_lsn"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Stopped says that capture stopped cleanly having confirmed ConfirmedLSN, the slot's
	// position then. Nothing but a reader of the slot moves it, so a slot found past it at the
	// next start was dropped and created again, or advanced (pg_replication_slot_advance), by
	// someone else meanwhile: the changes in between were never captured.
	Stopped bool `json:"stopped,omitempty"`
}

// slotRecordEvery is how often the running capture refreshes the record's confirmed position
// (it only serves the message that names what was lost).
const slotRecordEvery = time.Minute

// checkSlot finds out whether the slot this capture read before was lost (slotLoss), and then
// fails or prepares a resync, by source.postgres.on_slot_loss. A slot never recorded (a first
// run) is not lost.
func (c *Capture) checkSlot(ctx context.Context, cat *catalog, store *stateStore, in *incremental,
	state *snapshotState, tables [][2]string) error {
	rec := &slotRecord{}
	if err := store.loadKey(ctx, store.stateKey("slot"), rec); err != nil {
		return err
	}
	if rec.Slot == "" {
		return nil
	}
	var walStatus string
	var confirmed *string
	err := cat.conn.QueryRow(ctx, "SELECT coalesce(wal_status, ''), confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
		c.pg.Slot).Scan(&walStatus, &confirmed)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up replication slot %q: %w", c.pg.Slot, err)
	}
	var walNow *string // where the server's WAL is now (NULL on a standby that replayed nothing)
	if exists && walStatus != "lost" {
		err := cat.conn.QueryRow(ctx, "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text").Scan(&walNow)
		if err != nil {
			return fmt.Errorf("read the server's WAL position: %w", err)
		}
	}
	lost := slotLoss(rec, exists, walStatus, confirmed, walNow)
	if lost == "" {
		return nil
	}
	c.metrics.SlotLost(c.pg.Slot)
	if c.pg.OnSlotLoss == config.OnSlotLossFail {
		return setupError{errors.New(lost + slotLossRepair)}
	}
	c.log.Error(lost+"; resyncing: full refresh of every table (from a new slot if it is gone)", zap.String("slot", c.pg.Slot))
	return c.resync(ctx, cat, in, store, state, tables, walStatus == "lost")
}

// slotLoss says how the slot capture recorded (rec) was lost, "" when it was not: gone, or
// invalidated, or moved past the position capture confirmed when it stopped, or behind a server
// whose WAL (walNow) went back before what capture confirmed (a database restored from a backup
// or a snapshot of its disk: changes capture published after that point are in the topics and
// the targets, and no longer in the database).
func slotLoss(rec *slotRecord, exists bool, walStatus string, confirmed, walNow *string) string {
	missed := fmt.Sprintf("; changes made after %s (last confirmed at %s) were never captured and the targets miss them",
		rec.ConfirmedLSN, rec.UpdatedAt.Format(time.RFC3339))
	switch {
	case !exists:
		return fmt.Sprintf("replication slot %q no longer exists%s", rec.Slot, missed)
	case walStatus == "lost":
		return fmt.Sprintf("replication slot %q was invalidated (wal_status lost: the server removed WAL it still held for it)%s", rec.Slot, missed)
	case walNow != nil && lsnAfter(rec.ConfirmedLSN, *walNow):
		return fmt.Sprintf("the database's WAL is at %s, before %s, where capture confirmed replication slot %q (at %s): the database was "+
			"restored from a backup or a snapshot of its disk, and the changes capture published after %s are in the topics and the targets "+
			"but no longer in the database", *walNow, rec.ConfirmedLSN, rec.Slot, rec.UpdatedAt.Format(time.RFC3339), *walNow)
	case rec.Stopped && confirmed != nil && lsnAfter(*confirmed, rec.ConfirmedLSN):
		return fmt.Sprintf("replication slot %q is at %s, past where capture confirmed it when it stopped: it was dropped and created again, "+
			"or advanced (pg_replication_slot_advance), while capture was stopped%s", rec.Slot, *confirmed, missed)
	}
	return ""
}

// lsnAfter reports whether position a (pg_lsn text) is after b; false when either cannot be
// read, which slotLoss then takes as no loss.
func lsnAfter(a, b string) bool {
	x, err := pglogrepl.ParseLSN(a)
	if err != nil {
		return false
	}
	y, err := pglogrepl.ParseLSN(b)
	return err == nil && x > y
}

// publicationGap reports whether err is the replication stream failing to decode a change because
// the publication did not exist at its place in the WAL: it was dropped (and, since capture
// creates it at start, created again). PostgreSQL decodes every change with the catalog of its
// time, so the slot cannot be read past that point, whatever the publication is now, and the
// changes made while it was missing were never published. The error is told by its code, raised
// while pgoutput decodes (its context names the plugin) and naming the publication, not by its
// wording, which a server with another lc_messages translates; a slot that does not exist has
// the same code, but fails before any decoding.
func (c *Capture) publicationGap(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42704" && // undefined_object
		strings.Contains(pe.Where, "pgoutput") && strings.Contains(pe.Message, c.pg.Publication)
}

// abandonSlot handles a slot that cannot be read past a dropped publication (publicationGap) as
// a lost slot: with on_slot_loss: resync it drops the slot, so that the next run finds it lost
// and resyncs (a new slot, a full refresh of every table); with fail it stops capture, saying
// why and how to repair.
func (c *Capture) abandonSlot(ctx context.Context, cat *catalog, repl *pgconn.PgConn, cause error) error {
	stuck := fmt.Sprintf("replication slot %q cannot be read past the point where publication %q was dropped: "+
		"PostgreSQL decodes every change with the publications of its time, so the changes made while it was missing were never captured (%v)",
		c.pg.Slot, c.pg.Publication, cause)
	if c.pg.OnSlotLoss == config.OnSlotLossFail {
		c.metrics.SlotLost(c.pg.Slot)
		return setupError{errors.New(stuck + slotLossRepair)}
	}
	c.log.Error(stuck+"; dropping the slot to resync: new slot, full refresh of every table", zap.String("slot", c.pg.Slot))
	_ = repl.Close(ctx) // the slot is in use while its connection is open
	if _, err := cat.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", c.pg.Slot); err != nil {
		return fmt.Errorf("drop replication slot %q to resync: %w", c.pg.Slot, err)
	}
	return fmt.Errorf("replication slot %q dropped to resync after publication %q was dropped", c.pg.Slot, c.pg.Publication)
}

// resync queues a full refresh of every table and drops an invalidated slot, in that order: a
// crash in between finds the slot still lost and the refreshes queued, so nothing is skipped.
func (c *Capture) resync(ctx context.Context, cat *catalog, in *incremental, store *stateStore,
	state *snapshotState, tables [][2]string, dropSlot bool) error {
	for _, t := range tables {
		req := &SnapshotRequest{Table: t[0] + "." + t[1], FullRefresh: true, Reason: ReasonSlotLost}
		if err := in.enqueue(ctx, req); err != nil {
			return err
		}
	}
	if !state.Done {
		// An initial snapshot cut short by the loss is replaced by the refreshes.
		state.Done = true
		if err := store.save(ctx, state); err != nil {
			return err
		}
	}
	if dropSlot {
		if _, err := cat.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", c.pg.Slot); err != nil {
			return fmt.Errorf("drop invalidated replication slot %q: %w", c.pg.Slot, err)
		}
	}
	return nil
}

// recordSlot writes the slot's record at start and returns what keeps it current.
func (c *Capture) recordSlot(ctx context.Context, store *stateStore, systemID string, lsn pglogrepl.LSN) (*slotKeeper, error) {
	k := &slotKeeper{store: store, log: c.log, rec: slotRecord{Slot: c.pg.Slot, SystemID: systemID}}
	return k, k.write(ctx, lsn)
}

// slotKeeper keeps the slot record's confirmed position current.
type slotKeeper struct {
	store *stateStore
	log   *zap.Logger
	rec   slotRecord
	next  time.Time
}

func (k *slotKeeper) write(ctx context.Context, lsn pglogrepl.LSN) error {
	k.rec.ConfirmedLSN, k.rec.UpdatedAt = lsn.String(), time.Now().UTC()
	k.next = time.Now().Add(slotRecordEvery)
	return k.store.saveKey(ctx, k.store.stateKey("slot"), &k.rec)
}

// tick refreshes the record now and then; a failure only makes the record older.
func (k *slotKeeper) tick(ctx context.Context, lsn pglogrepl.LSN) {
	if k == nil || time.Now().Before(k.next) || lsn == 0 {
		return
	}
	if err := k.write(ctx, lsn); err != nil {
		k.log.Warn("could not update the slot record", zap.Error(err))
	}
}
