// Package httpx holds the small HTTP helpers the webhook and SaaS connectors share.
package httpx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WithoutURL strips the URL that net/http puts into its errors: it may hold credentials.
func WithoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// DrainClose reads a little of what is left of a body so the connection can be reused, and
// closes it.
func DrainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// RetryAfter parses a Retry-After header, seconds (fractions allowed, as Shopify sends "2.0")
// or an HTTP date, into a wait of at most limit; an absent or unreadable header gives 0.
func RetryAfter(h string, now time.Time, limit time.Duration) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(h, 64); err == nil {
		if secs >= limit.Seconds() {
			return limit
		}
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), limit)
}

// Snippet is the start of a response body for error messages: at most n bytes, not cutting a
// character in two, trimmed, invalid UTF-8 replaced; "(empty body)" when nothing is left.
func Snippet(body []byte, n int) string {
	cut := len(body) > n
	if cut {
		body = body[:n]
		for len(body) > 0 && !utf8.Valid(body) {
			body = body[:len(body)-1]
		}
	}
	s := strings.ToValidUTF8(strings.TrimSpace(string(body)), "?")
	switch {
	case s == "":
		return "(empty body)"
	case cut:
		return s + "…"
	}
	return s
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
