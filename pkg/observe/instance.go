package observe

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Several capture processes may run for one slot: the one holding the slot's capture lock (a
// session-level advisory lock in the captured database) streams, the others wait as standbys.
// The key and the lookup of its holder live here so that capture and status agree on them.

// CaptureLockKey is the advisory lock key of slot's capture lock.
func CaptureLockKey(slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("backflow capture lock:" + slot))
	return int64(h.Sum64())
}

// captureHolderQuery finds the session holding a bigint advisory lock: pg_locks shows the key's
// high and low 32 bits as classid and objid, with objsubid 1.
const captureHolderQuery = `SELECT l.pid, coalesce(a.application_name, '')
	FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid`

// CaptureHolder returns the server process id and application_name ("backflow capture
// <host>:<pid>") of the session holding slot's capture lock in conn's database; pid 0 when no
// capture holds it.
func CaptureHolder(ctx context.Context, conn *pgx.Conn, slot string) (pid int32, name string, err error) {
	key := uint64(CaptureLockKey(slot))
	err = conn.QueryRow(ctx, captureHolderQuery, int64(key>>32), int64(key&0xffffffff)).Scan(&pid, &name)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("look up the holder of the capture lock of slot %q: %w", slot, err)
	}
	return pid, name, nil
}

// readInstance names the capture process that holds the slot's capture lock, or else the
// session streaming from the slot (a capture from before the lock, or another tool).
func readInstance(ctx context.Context, conn *pgx.Conn, slot string, cs *CaptureStatus) error {
	pid, name, err := CaptureHolder(ctx, conn, slot)
	if err != nil {
		return err
	}
	if pid == 0 {
		err = conn.QueryRow(ctx, `SELECT s.active_pid, coalesce(a.application_name, '')
			FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
			WHERE s.slot_name = $1 AND s.active_pid IS NOT NULL`, slot).Scan(&pid, &name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look up the session reading slot %q: %w", slot, err)
		}
	}
	if name == "" { // application_name of other roles' sessions is hidden without pg_read_all_stats
		name = fmt.Sprintf("server pid %d", pid)
	}
	cs.Instance, cs.InstancePID = name, pid
	return nil
}

func newCaptureActive() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_capture_active",
		Help: "1 while this process holds the slot's capture lock and captures, 0 while it waits as a standby."}, []string{"slot"})
}

// CaptureActive records whether this process is the active capture of slot or a standby.
func (m *Metrics) CaptureActive(slot string, active bool) {
	if m == nil {
		return
	}
	v := 0.0
	if active {
		v = 1
	}
	m.captureActive.WithLabelValues(slot).Set(v)
	m.mu.Lock()
	m.active[slot] = active
	m.mu.Unlock()
}

// CaptureIsActive reports whether this process is the active capture of slot (not a standby,
// nor one that has not taken the lock yet). A nil *Metrics knows nothing and answers true.
func (m *Metrics) CaptureIsActive(slot string) bool {
	if m == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[slot]
}
