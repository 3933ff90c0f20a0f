package redis

import (
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// transientPrefixes are Redis error codes that say "not now" rather than "not this record".
// Authentication and permission errors are among them: they concern the whole sink, so the batch
// is retried (and the sink stalls, visibly) instead of being bisected into the dead-letter topic.
var transientPrefixes = []string{
	"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY", "NOREPLICAS",
	"OOM", "MOVED", "ASK", "NOAUTH", "WRONGPASS", "NOPERM", "ERR max number of clients",
}

// isTransient reports whether a retry of the batch can succeed after err: every error that is
// not a reply from Redis (connection refused or lost, timeouts, a closed pool) and the replies
// listed in transientPrefixes.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return true
	}
	if errors.Is(err, goredis.TxFailedErr) {
		return true
	}
	msg := rerr.Error()
	for _, p := range transientPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// isExecAbort reports whether Redis discarded a whole MULTI/EXEC transaction.
func isExecAbort(err error) bool {
	return goredis.HasErrorPrefix(err, "EXECABORT")
}
