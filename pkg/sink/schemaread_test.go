package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestUnknownFingerprintNeedsARead: a fingerprint the store lacks is the message's fault only once
// the schema topic was read to its end; while the topic cannot be read it is codec.ErrUnavailable,
// which the sink retries instead of dead-lettering.
func TestUnknownFingerprintNeedsARead(t *testing.T) {
	msg := []byte{0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0} // single-object, fingerprint in no store
	decodeWith := func(base []kgo.Opt) error {
		src, err := newSchemaSource(base, config.Kafka{TopicPrefix: "wh"}, config.Sink{})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := codec.NewDecoder(codec.Schemas(src.store))
		if err != nil {
			t.Fatal(err)
		}
		s := &Sink{schemas: src, dec: dec, log: zap.NewNop()}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = s.decode(ctx, &kgo.Record{Topic: "wh.public.t", Value: msg})
		return err
	}

	unreachable := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.DialTimeout(100 * time.Millisecond),
		kgo.RequestRetries(1), kgo.RetryTimeout(500 * time.Millisecond)}
	if err := decodeWith(unreachable); !errors.Is(err, codec.ErrUnavailable) || !errors.Is(err, codec.ErrUnknownSchema) {
		t.Errorf("schema topic unreadable: error = %v, want ErrUnavailable (and ErrUnknownSchema)", err)
	}

	kf := testenv.NewKafka(t)
	if err := decodeWith([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}); !errors.Is(err, codec.ErrUnknownSchema) || errors.Is(err, codec.ErrUnavailable) {
		t.Errorf("schema topic read, fingerprint not there: error = %v, want ErrUnknownSchema only", err)
	}
}
