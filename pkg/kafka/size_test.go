package kafka

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestMessageSizeLimit shows what the broker (kfake, like Kafka) does with max.message.bytes:
// EnsureTopics sets it, a record larger than it passes when zstd shrinks it below, and one that
// does not shrink is refused with MESSAGE_TOO_LARGE; a producer with BatchLimit refuses it in the
// client already.
func TestMessageSizeLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	adm := kadm.NewClient(newClient(t, k.Brokers()))
	const limit = 256 << 10
	if err := EnsureTopics(ctx, adm, []string{"big", "dflt"}, config.Topics{Partitions: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, adm, []string{"small"}, config.Topics{Partitions: 1, MaxMessageBytes: limit}, nil); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int{"small": limit, "dflt": DefaultMaxMessageBytes} {
		if got, err := TopicMaxMessageBytes(ctx, adm, topic); err != nil || got != want {
			t.Errorf("TopicMaxMessageBytes(%s) = %d, %v; want %d", topic, got, err, want)
		}
	}

	// Like capture's producer of single oversized records: the broker judges the compressed batch.
	solo := newClient(t, k.Brokers(), OversizeProducerOpts()...)
	compressible := bytes.Repeat([]byte("a wide row of text compresses well; "), 4*limit/36)
	if err := solo.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: compressible}).FirstErr(); err != nil {
		t.Errorf("%d compressible bytes on a topic of %d: %v", len(compressible), limit, err)
	}
	random := make([]byte, 2*limit)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(random)
	err := solo.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: random}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("%d random bytes on a topic of %d: %v, want MESSAGE_TOO_LARGE from the broker", len(random), limit, err)
	}
	// Random decimal digits 15 % over the limit fit once compressed at zstd's default level, which
	// the oversize producer uses (to about half); the fastest level, the regular producer's,
	// leaves text without repeats as it is.
	digits := make([]byte, limit*115/100)
	for i := range digits {
		digits[i] = '0' + random[i%len(random)]%10
	}
	if err := solo.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: digits}).FirstErr(); err != nil {
		t.Errorf("%d random digits on a topic of %d: %v", len(digits), limit, err)
	}
	// The default limit takes the same random bytes.
	if err := solo.ProduceSync(ctx, &kgo.Record{Topic: "dflt", Value: random}).FirstErr(); err != nil {
		t.Errorf("%d random bytes on a topic of the default %d: %v", len(random), DefaultMaxMessageBytes, err)
	}

	limited := newClient(t, k.Brokers(), append(ProducerOpts(), BatchLimit(func(string) int32 { return limit }))...)
	err = limited.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: compressible}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("BatchLimit producer took %d bytes over a %d limit: %v", len(compressible), limit, err)
	}
	// Small records fill batches up to the limit, never beyond: none is refused.
	var rs []*kgo.Record
	for range 64 {
		v := make([]byte, limit/16)
		_, _ = rng.Read(v)
		rs = append(rs, &kgo.Record{Topic: "small", Value: v})
	}
	if err := limited.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Errorf("batches of small random records on a %d-byte topic: %v", limit, err)
	}
}
