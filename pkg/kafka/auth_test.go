package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// ping connects with ClientOpts(cfg) and issues one metadata request.
func ping(t *testing.T, cfg config.Kafka) error {
	t.Helper()
	opts, err := ClientOpts(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestClientOptsSASL(t *testing.T) {
	for _, mech := range []string{MechanismScramSHA256, MechanismScramSHA512, MechanismPlain} {
		t.Run(mech, func(t *testing.T) {
			k := testenv.NewKafka(t, kfake.EnableSASL(), kfake.Superuser(mech, "alice", "s3cret"))
			good := config.Kafka{Brokers: k.Brokers(), SASL: &config.SASL{Mechanism: strings.ToLower(mech), Username: "alice", Password: "s3cret"}}
			if err := ping(t, good); err != nil {
				t.Fatalf("right password: %v", err)
			}
			bad := good
			bad.SASL = &config.SASL{Mechanism: mech, Username: "alice", Password: "wrong"}
			if err := ping(t, bad); err == nil {
				t.Fatal("wrong password authenticated")
			} else {
				t.Logf("wrong password: %v", err)
			}
			none := config.Kafka{Brokers: k.Brokers()}
			if err := ping(t, none); err == nil {
				t.Fatal("no SASL was accepted by a SASL broker")
			}
		})
	}
}

func TestClientOptsTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, serverCert := testCerts(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	k := testenv.NewKafka(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))

	if err := ping(t, config.Kafka{Brokers: k.Brokers(), TLS: &config.TLS{CAFile: caFile}}); err != nil {
		t.Fatalf("TLS with CA file: %v", err)
	}
	if err := ping(t, config.Kafka{Brokers: k.Brokers(), TLS: &config.TLS{InsecureSkipVerify: true}}); err != nil {
		t.Fatalf("TLS with insecure_skip_verify: %v", err)
	}
	if err := ping(t, config.Kafka{Brokers: k.Brokers(), TLS: &config.TLS{}}); err == nil {
		t.Fatal("TLS with an unknown CA was accepted")
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ClientOpts(config.Kafka{Brokers: k.Brokers(), TLS: &config.TLS{CAFile: notPEM}}, nil)
	if err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Fatalf("error %v does not name %s", err, notPEM)
	}
	_, err = ClientOpts(config.Kafka{Brokers: k.Brokers(), TLS: &config.TLS{CertFile: notPEM, KeyFile: caFile}}, nil)
	if err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Fatalf("error %v does not name %s", err, notPEM)
	}
}

// testCerts returns a CA certificate in PEM and a server certificate for 127.0.0.1 signed by it.
func testCerts(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}
