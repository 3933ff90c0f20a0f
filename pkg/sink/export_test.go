package sink

// Decoder is the sink's decoder interface, for tests that put a decoder of their own in front.
type Decoder = decoder

// WrapDecoder replaces a prepared sink's decoder by wrap of it.
func WrapDecoder(s *Sink, wrap func(Decoder) Decoder) { s.dec = wrap(s.dec) }
