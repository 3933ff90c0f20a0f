package capture

// WithPieceBytes makes a snapshot produce its chunks in pieces of about n bytes of records, so
// that tests of small tables cut their chunks in pieces too.
func WithPieceBytes(n int64) Opt { return func(c *Capture) { c.pieceBytes = n } }
