package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// Two capture processes may run for one slot (two pods, two hosts) so that one takes over when
// the other dies. They compete for a session-level advisory lock in the captured database, keyed
// by the slot: the holder captures, the other waits without touching the publication, the slot
// or the snapshot state. The lock lives as long as the holder's session, so it is released by
// PostgreSQL the moment the holder's process or connection dies; the holder in turn stops
// capturing as soon as it finds that session gone, before a standby could be streaming.

const (
	// standbyPoll is how often a standby tries the lock, and how often the holder checks that its
	// lock's session is alive.
	standbyPoll = time.Second
	// lockPingTimeout bounds one check of the holder's session: a server that does not answer
	// within it is treated as lost.
	lockPingTimeout = 3 * time.Second
	// slotReleaseWait bounds how long a new holder waits for the previous one's replication
	// connection to let go of the slot before it starts anyway (and retries while it is busy).
	slotReleaseWait = 15 * time.Second
)

// WithInstance names this capture process in PostgreSQL (application_name "backflow capture
// <name>", shown by `backflow status`) and in the standby's log. Default "<hostname>:<pid>".
func WithInstance(name string) Opt { return func(c *Capture) { c.instance = name } }

func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// instanceName is WithInstance's name, or the default.
func (c *Capture) instanceName() string {
	if c.instance == "" {
		return defaultInstance()
	}
	return c.instance
}

// applicationName is what capture's connections call themselves.
func (c *Capture) applicationName() string { return "backflow capture " + c.instanceName() }

// lockLost is the cause of the run context's end when the lock's session is gone.
type lockLost struct{ error }

func (e lockLost) Unwrap() error { return e.error }

// whileActive runs run once this process holds the slot's capture lock, waiting as a standby
// until then, and stops it when the lock's session is lost.
func (c *Capture) whileActive(ctx context.Context, run func(context.Context) error) error {
	lctx, release, err := c.acquireLock(ctx)
	if err != nil {
		return err
	}
	defer release()
	err = run(lctx)
	var lost lockLost
	if cause := context.Cause(lctx); ctx.Err() == nil && errors.As(cause, &lost) {
		return lost.error
	}
	if slotBusy(err) {
		return fmt.Errorf("replication slot %q is still read by another session (a capture that has not stopped yet?); retrying: %w", c.pg.Slot, err)
	}
	return err
}

// slotBusy reports whether err is PostgreSQL refusing the slot to a second reader
// ("replication slot … is active for PID …", SQLSTATE 55006): transient while the previous
// holder's connection closes.
func slotBusy(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55006"
}

// acquireLock waits until this process holds the slot's capture lock, on a connection of its
// own. It returns a context that ends when the lock's session is lost, and the func that
// releases the lock.
func (c *Capture) acquireLock(ctx context.Context) (context.Context, func(), error) {
	conn, err := c.connect(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	closeConn := func() { _ = conn.Close(context.WithoutCancel(ctx)) }
	waited, err := c.waitForLock(ctx, conn)
	if err != nil {
		closeConn()
		return nil, nil, err
	}
	if waited {
		if err := c.waitSlotReleased(ctx, conn); err != nil {
			closeConn()
			return nil, nil, err
		}
	}
	c.log.Info("active: this process captures the slot", zap.String("slot", c.pg.Slot), zap.String("instance", c.instanceName()))
	c.metrics.CaptureActive(c.pg.Slot, true)
	lctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchLock(lctx, conn, cancel)
	}()
	return lctx, func() {
		cancel(nil)
		<-watched
		closeConn()
		c.metrics.CaptureActive(c.pg.Slot, false)
	}, nil
}

// waitForLock polls the lock every standbyPoll until it is this session's; waited says whether
// another capture held it meanwhile.
func (c *Capture) waitForLock(ctx context.Context, conn *pgx.Conn) (waited bool, err error) {
	key, holder := observe.CaptureLockKey(c.pg.Slot), ""
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
			return waited, fmt.Errorf("take the capture lock of slot %q: %w", c.pg.Slot, err)
		}
		if got {
			return waited, nil
		}
		waited = true
		pid, name, err := observe.CaptureHolder(ctx, conn, c.pg.Slot)
		if err != nil {
			return waited, err
		}
		if pid != 0 && name != holder { // once per holder, then quietly
			holder = name
			c.log.Info(fmt.Sprintf("standby: slot %s is captured by %s", c.pg.Slot, name),
				zap.String("slot", c.pg.Slot), zap.String("active", name), zap.Int32("active_server_pid", pid))
		}
		c.metrics.CaptureActive(c.pg.Slot, false)
		c.metrics.Progress(observe.ComponentCapture) // a waiting standby is healthy
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(standbyPoll):
		}
	}
}

// waitSlotReleased waits, after a takeover, until no session reads the slot: the previous holder
// stops streaming once it finds its lock gone, which takes up to about a poll and a ping.
func (c *Capture) waitSlotReleased(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(slotReleaseWait)
	for {
		var active bool
		err := conn.QueryRow(ctx, "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", c.pg.Slot).Scan(&active)
		if err != nil {
			return fmt.Errorf("look up replication slot %q: %w", c.pg.Slot, err)
		}
		if !active || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(standbyPoll / 5):
		}
	}
}

// watchLock checks every standbyPoll that the lock's session is alive, and ends ctx with a
// lockLost cause when it is not: a standby may hold the lock by then.
func (c *Capture) watchLock(ctx context.Context, conn *pgx.Conn, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(standbyPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, done := context.WithTimeout(ctx, lockPingTimeout)
		err := conn.Ping(pctx)
		done()
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("lost the session holding the capture lock of slot %q, so a standby may take over: stopping: %w", c.pg.Slot, err)
			c.log.Error("capture lock lost", zap.String("slot", c.pg.Slot), zap.Error(err))
			cancel(lockLost{err})
			return
		}
	}
}
