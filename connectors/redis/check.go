package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check connects with the sink's settings and pings the server, then asks its ACL whether the
// user may run the commands the connector runs (ACL DRYRUN, Redis 7), writing nothing. Where the
// user may not run ACL WHOAMI and ACL DRYRUN itself, or the server has no ACL, it is only pinged:
// Redis has no other way to ask about a write without making it.
func Check(ctx context.Context, p sink.Params, _ []string) error {
	cfg, err := parseConfig(p)
	if err != nil {
		return err
	}
	client := goredis.NewClient(cfg.opts)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping %s: %w", cfg.redacted, err)
	}
	user, err := client.Do(ctx, "ACL", "WHOAMI").Text()
	if err != nil {
		return nil // no ACL (Redis before 6), or no right to ask: the ping was the whole check
	}
	key := cfg.key.prefix() + "backflow-check"
	write := []any{"HSET", key, "f", "v"}
	if cfg.mode == ModeJSON {
		write = []any{"SET", key, "{}"}
	}
	var problems []error
	for _, cmd := range [][]any{write, {"DEL", key}, {"WATCH", key}} {
		args := append([]any{"ACL", "DRYRUN", user}, cmd...)
		res, err := client.Do(ctx, args...).Text()
		switch {
		case err != nil && (strings.Contains(strings.ToLower(err.Error()), "unknown subcommand") || strings.HasPrefix(err.Error(), "NOPERM")):
			return errors.Join(problems...) // Redis 6 (no dry run), or no right to ask
		case err != nil:
			problems = append(problems, fmt.Errorf("redis: ACL DRYRUN %v: %w", cmd[0], err))
		case res != "OK":
			problems = append(problems, fmt.Errorf("redis: user %q may not run %v on %s: %s", user, cmd[0], key, res))
		}
	}
	return errors.Join(problems...)
}
