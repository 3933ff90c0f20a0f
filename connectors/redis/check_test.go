package redis

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestCheck runs the read-only check against the test server: the default user passes, a user
// that may only read (and ask the ACL about itself) is told it may not write, and a wrong
// password is refused.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	rdb := direct(t)
	prefix := testPrefix(t, rdb)
	user := strings.ReplaceAll(strings.TrimSuffix(prefix, ":"), ":", "_")
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "+@read", "+ping", "+acl|whoami", "+acl|dryrun").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	params := func(u string) sink.Params {
		return sink.Params{Sink: "s", Key: []string{"id"}, With: map[string]any{"url": u, "key": prefix + "{id}"}}
	}
	if err := Check(ctx, params(redisURL()), nil); err != nil {
		t.Errorf("check as the default user: %v", err)
	}
	u, err := url.Parse(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, "pw")
	if err := Check(ctx, params(u.String()), nil); err == nil || !strings.Contains(err.Error(), "may not run HSET") {
		t.Errorf("check as a read-only user: %v", err)
	}
	u.User = url.UserPassword(user, "wrong")
	if err := Check(ctx, params(u.String()), nil); err == nil || !strings.Contains(err.Error(), "ping") {
		t.Errorf("check with a wrong password: %v", err)
	}
	if n, _ := rdb.Keys(ctx, prefix+"*").Result(); len(n) != 0 {
		t.Errorf("the check wrote keys %v", n)
	}
}
