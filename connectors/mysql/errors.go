package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Server error numbers a retry can fix: the data is not at fault.
var retryableCodes = map[uint16]string{
	1040: "too many connections",
	1203: "user has too many connections",
	1226: "user resource limit",
	1129: "host blocked",
	1205: "lock wait timeout",
	1213: "deadlock",
	1614: "XA deadlock",
	1637: "too many active transactions",
	2006: "server has gone away",
	2013: "lost connection",
	1053: "server shutdown",
	1317: "query interrupted",
	1927: "connection killed",
	4031: "disconnected by the server",
	1158: "network read error",
	1159: "network read timeout",
	1160: "network write error",
	1161: "network write timeout",
	1290: "server is read-only",
	1836: "server is read-only",
	1792: "read-only transaction",
	1047: "node not ready (Galera)",
	1180: "commit failed",
	1181: "rollback failed",
	1021: "disk full",
	1030: "storage engine error",
	1114: "table is full",
	// Privileges and schema: every record would fail the same way until someone fixes the
	// target, so the sink waits instead of dead-lettering everything.
	1044: "access denied",
	1045: "access denied",
	1142: "command denied",
	1143: "column access denied",
	1146: "table does not exist",
	1054: "unknown column",
	1036: "table is read-only",
}

// schemaCodes mean the table changed under the connector: its columns are read again.
var schemaCodes = map[uint16]bool{1146: true, 1054: true}

// isRetryable reports whether err is transient: a lost or refused connection, a deadlock, a
// lock timeout, an overloaded or read-only server, or a target that must be fixed by hand.
func isRetryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		_, ok := retryableCodes[me.Number]
		return ok
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, mysql.ErrMalformPkt) || errors.Is(err, mysql.ErrPktSync) ||
		errors.Is(err, mysql.ErrPktSyncMul) || errors.Is(err, mysql.ErrBusyBuffer) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// classify marks err retryable when a retry can fix it. A cancelled context is always
// retryable: the batch is not at fault when the sink is stopping.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil || isRetryable(err) {
		return sink.Retryable(err)
	}
	return err
}

var (
	reAtRow  = regexp.MustCompile(` at row (\d+)\s*$`)
	reColumn = regexp.MustCompile(`(?:for|Column) (?:column )?((?:` + "`[^`]*(?:``[^`]*)*`" + `\.)*(?:` + "`[^`]*(?:``[^`]*)*`" + `|'[^']*(?:''[^']*)*'))`)
)

// errColumnRow finds the column name and the 1-based row number a server error message names
// ("Out of range value for column 'n' at row 3",
// "Incorrect integer value: 'x' for column `db`.`t`.`n` at row 1").
func errColumnRow(msg string) (col string, row int) {
	if m := reAtRow.FindStringSubmatch(msg); m != nil {
		row, _ = strconv.Atoi(m[1])
	}
	if all := reColumn.FindAllStringSubmatch(msg, -1); all != nil {
		ref := all[len(all)-1][1] // the last: a quoted value may itself contain "for 'x'"

		if strings.HasPrefix(ref, "'") {
			col = strings.ReplaceAll(ref[1:len(ref)-1], "''", "'")
		} else {
			// the last backtick-quoted part
			i := len(ref) - 1
			for j := i - 1; j >= 0; j-- {
				if ref[j] == '`' {
					if j > 0 && ref[j-1] == '`' {
						j--
						continue
					}
					col = strings.ReplaceAll(ref[j+1:i], "``", "`")
					break
				}
			}
		}
	}
	return col, row
}
