package sink

import (
	"context"

	"golang.org/x/time/rate"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Decoder is the sink's decoder interface, for tests that put a decoder of their own in front.
type Decoder = decoder

// WrapDecoder replaces a prepared sink's decoder by wrap of it.
func WrapDecoder(s *Sink, wrap func(Decoder) Decoder) { s.dec = wrap(s.dec) }

// Limiter returns the sink's rate limiter (nil without a rate_limit).
func Limiter(s *Sink) *rate.Limiter { return s.limiter }

// MemberRate is the limiter's rate and burst for a member's share of rate_limit.
func MemberRate(perSec float64, burst int, share float64, total int) (rate.Limit, int) {
	return groupRate{perSec: perSec, burst: burst}.member(share, total)
}

// NoteTruncate writes to a sink's barrier topic that partitions reached a truncate of topic and,
// with applied, that it was applied, as workers that then crashed would have.
func NoteTruncate(ctx context.Context, opts []kgo.Opt, sink, topic, id string, n int32, reached []int32, applied bool) error {
	b, err := openBarrierLog(ctx, opts, sink, BarrierTopic(sink), config.Topics{Partitions: 1, ReplicationFactor: 1}, zap.NewNop())
	if err != nil {
		return err
	}
	defer b.close()
	for _, p := range reached {
		if err := b.write(ctx, barrierNote{Topic: topic, Truncate: id, Partitions: n, Reached: &p}); err != nil {
			return err
		}
	}
	if !applied {
		return nil
	}
	return b.write(ctx, barrierNote{Topic: topic, Truncate: id, Partitions: n, Applied: true})
}
