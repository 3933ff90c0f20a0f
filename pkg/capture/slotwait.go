package capture

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// PostgreSQL creates a logical slot only once every transaction that had written something when
// the creation began has ended: before that it cannot know where decoding may start. A session
// left "idle in transaction" after a write, a long batch job or a forgotten prepared transaction
// thus holds a first start of capture for as long as it lasts, with nothing on capture's side
// but a call that does not return. watchSlotCreation names what it waits for.

const (
	// slotWaitFirst is how long a slot's creation may take before capture says what it waits for.
	slotWaitFirst = 5 * time.Second
	// slotWaitEvery is how often it says so again while it waits.
	slotWaitEvery = 30 * time.Second
)

// blockersQuery lists the transactions that had an xid before the slot's creation began, $1
// seconds ago on the server's clock (the capture host's may be off): those the creation waits
// for. Prepared transactions count too.
const blockersQuery = `SELECT format('pid %s (database %s, user %s, application %L, %s since %s): %s',
		pid, datname, usename, application_name, state, xact_start, left(query, 200))
	FROM pg_stat_activity
	WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND xact_start < now() - make_interval(secs => $1)
		AND backend_type = 'client backend'
	UNION ALL
	SELECT format('prepared transaction %L (database %s, owner %s, prepared at %s): COMMIT PREPARED or ROLLBACK PREPARED it',
		gid, database, owner, prepared)
	FROM pg_prepared_xacts WHERE prepared < now() - make_interval(secs => $1)
	LIMIT 20`

// watchSlotCreation logs, from slotWaitFirst after it is called and every slotWaitEvery until
// the returned function is called, the transactions the creation of the slot waits for.
func (c *Capture) watchSlotCreation(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		timer := time.NewTimer(slotWaitFirst)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			c.logSlotBlockers(ctx, began)
			timer.Reset(slotWaitEvery)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// logSlotBlockers logs the transactions a slot whose creation began at began waits for.
func (c *Capture) logSlotBlockers(ctx context.Context, began time.Time) {
	blockers, err := c.slotBlockers(ctx, began)
	if ctx.Err() != nil {
		return
	}
	fields := []zap.Field{zap.String("slot", c.pg.Slot), zap.Duration("waiting", time.Since(began).Round(time.Second))}
	if err != nil {
		fields = append(fields, zap.NamedError("lookup_error", err))
	}
	c.log.Warn("creating the replication slot waits for transactions that had written before it began to end (commit or roll back): "+
		"PostgreSQL cannot start decoding before them", append(fields, zap.Strings("transactions", blockers))...)
}

func (c *Capture) slotBlockers(ctx context.Context, began time.Time) ([]string, error) {
	conn, err := c.connect(ctx, false)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, blockersQuery, time.Since(began).Seconds())
	if err != nil {
		return nil, fmt.Errorf("list open transactions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return out, fmt.Errorf("list open transactions: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
