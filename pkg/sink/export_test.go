package sink

import "golang.org/x/time/rate"

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
