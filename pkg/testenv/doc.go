// Package testenv starts real services for tests and for the local quickstart: a throwaway
// PostgreSQL cluster with logical WAL, run from the installed server binaries, and an in-process
// Kafka broker (franz-go's kfake) on loopback. The Start functions do not need a *testing.T; the
// New wrappers fail the test (never skip it) when a service cannot start and clean up after it.
package testenv
