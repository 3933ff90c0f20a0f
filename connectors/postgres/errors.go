package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// retryableCode reports whether a server error can go away on its own or by an operator's hand
// without changing the records: connection trouble, concurrency conflicts, resource limits,
// shutdowns and failovers, timeouts, and the target's shape or grants changing under us.
func retryableCode(pe *pgconn.PgError) bool {
	switch pe.Code {
	case "40001", // serialization_failure
		"40P01",             // deadlock_detected
		"40003",             // statement_completion_unknown
		"57P01",             // admin_shutdown
		"57P02",             // crash_shutdown
		"57P03",             // cannot_connect_now
		"57P05",             // idle_session_timeout
		"57014",             // query_canceled (statement_timeout)
		"57000",             // operator_intervention
		"55P03",             // lock_not_available (lock_timeout)
		"55006",             // object_in_use
		readOnlyTransaction, // a standby after a failover (see leaveStandby)
		"25P03",             // idle_in_transaction_session_timeout
		"25P04",             // transaction_timeout
		"42P01",             // undefined_table: dropped or renamed under us
		"42703",             // undefined_column: dropped or renamed under us
		"42501",             // insufficient_privilege: a grant is missing
		"0A000" /* see below */ :
		if pe.Code == "0A000" {
			return strings.Contains(pe.Message, "cached plan")
		}
		return true
	}
	switch pe.Code[:2] {
	case "08", // connection_exception
		"53", // insufficient_resources: disk full, out of memory, too many connections
		"58": // system_error: I/O error
		return true
	}
	return isCatalogRace(pe)
}

// isRetryable classifies an error of a batch: server errors by SQLSTATE. Every other error from
// pgx (a dial failure, a TLS or authentication failure at connect, a broken or timed-out
// connection, a cancelled context) concerns the connection, not the records; the records' own
// problems found before sending them are reported by recordError and never get here.
func isRetryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return retryableCode(pe)
	}
	return true
}

// describe spells out a server error for a message: PostgreSQL's text and SQLSTATE, then the
// column, constraint, data type and detail it reports. column overrides an absent ColumnName.
func describe(pe *pgconn.PgError, column string) string {
	var b strings.Builder
	b.WriteString(pe.Message)
	b.WriteString(" (SQLSTATE " + pe.Code + ")")
	if pe.ColumnName != "" {
		column = pe.ColumnName
	}
	if column != "" {
		b.WriteString("; column " + strconv.Quote(column))
	}
	if pe.ConstraintName != "" {
		b.WriteString("; constraint " + strconv.Quote(pe.ConstraintName))
	}
	if pe.DataTypeName != "" {
		b.WriteString("; type " + pe.DataTypeName)
	}
	if pe.Detail != "" {
		b.WriteString("; detail: " + pe.Detail)
	}
	if pe.Hint != "" {
		b.WriteString("; hint: " + pe.Hint)
	}
	return b.String()
}

// pgError carries a server error with a message naming the table and what PostgreSQL said.
type pgError struct {
	msg string
	err *pgconn.PgError
}

func (e *pgError) Error() string { return e.msg }
func (e *pgError) Unwrap() error { return e.err }
