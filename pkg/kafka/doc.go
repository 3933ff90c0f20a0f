// Package kafka holds the franz-go setup shared by capture and sinks: client options (seed brokers,
// logging, TLS, SASL), producer options, topic creation, and the embedded single-machine broker.
package kafka
