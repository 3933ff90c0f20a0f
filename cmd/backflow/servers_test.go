package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// MariaDB and Redis servers for the tests that sink into them, started from the installed
// binaries on first use; each test takes a database of its own.
var (
	mariadbServer = testenv.Shared[*testenv.MariaDB]{Start: testenv.StartMariaDB}
	redisServer   = testenv.Shared[*testenv.Redis]{Start: testenv.StartRedis}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for name, s := range map[string]interface{ Close() error }{"MariaDB": &mariadbServer, "Redis": &redisServer} {
		if err := s.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: close %s: %v\n", name, err)
		}
	}
	os.Exit(code)
}

// sqlRedisTargets gives a test a MySQL database with an empty m_copy table and a Redis database
// of its own, next to the PostgreSQL target dst. It returns them with the MySQL DSN and the
// Redis URL for the pipeline file.
func sqlRedisTargets(t *testing.T, dst *testenv.Postgres, tag string) (targets *rebuildTargets, myDSN, redisURL string) {
	ctx := context.Background()
	maria := mariadbServer.Get(t)
	myDSN = maria.DSN(maria.NewDatabase(t))
	my, err := sql.Open("mysql", myDSN)
	must(t, err)
	t.Cleanup(func() { my.Close() })
	_, err = my.ExecContext(ctx, "CREATE TABLE m_copy (id int PRIMARY KEY, v varchar(100))")
	must(t, err)
	redisURL = redisServer.Get(t).NewDB(t)
	opts, err := redis.ParseURL(redisURL)
	must(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return &rebuildTargets{t: t, dst: dst, my: my, rdb: rdb, prefix: tag}, myDSN, redisURL
}
