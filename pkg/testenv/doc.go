// Package testenv starts real services for tests and for the local quickstart: a throwaway
// PostgreSQL cluster with logical WAL, run from the installed server binaries, and an in-process
// Kafka broker (franz-go's kfake) on loopback, and throwaway MariaDB and Redis servers run from
// the installed binaries on free loopback ports (Shared keeps one of them per test binary, each
// test taking a database of its own). The Start functions do not need a *testing.T; the
// New wrappers fail the test (never skip it) when a service cannot start and clean up after it.
package testenv
