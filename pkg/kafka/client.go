package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// SASL mechanism names accepted in config.SASL.Mechanism (case-insensitive).
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// ClientOpts returns the kgo options every backflow client needs: seed brokers, logging through
// log (nil disables client logging), TLS and SASL from cfg. cfg.Brokers must not be empty; for the
// embedded broker pass its Brokers.
func ClientOpts(cfg config.Kafka, log *zap.Logger) ([]kgo.Opt, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}
	if log != nil {
		// franz-go logs every metadata refresh at info; only its warnings belong in a service log.
		opts = append(opts, kgo.WithLogger(kzap.New(log.Named("kafka"), kzap.Level(kgo.LogLevelWarn))))
	}
	if cfg.TLS != nil {
		tc, err := TLSConfig(*cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.SASL != nil {
		mech, err := SASLMechanism(*cfg.SASL)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %w", err)
		}
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// TLSConfig builds a client tls.Config: an optional CA bundle replacing the system roots, an
// optional client certificate and key (both or neither), and InsecureSkipVerify.
func TLSConfig(c config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // user's explicit choice
	if c.CAFile != "" {
		pool, err := loadCAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("cert_file and key_file must be set together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s with key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func loadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificates found", file)
	}
	return pool, nil
}

// SASLMechanism returns the franz-go SASL mechanism for c: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
func SASLMechanism(c config.SASL) (sasl.Mechanism, error) {
	if c.Username == "" {
		return nil, errors.New("username is empty")
	}
	switch strings.ToUpper(strings.TrimSpace(c.Mechanism)) {
	case MechanismPlain:
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	case MechanismScramSHA256:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case MechanismScramSHA512:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("unknown mechanism %q (want %s, %s or %s)",
			c.Mechanism, MechanismPlain, MechanismScramSHA256, MechanismScramSHA512)
	}
}
