package httpx

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzRetryAfter checks that whatever a server sends as Retry-After, the wait is within [0,
// limit], and that whole seconds and HTTP dates within the limit are waited exactly.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	const limit = 10 * time.Minute
	for _, h := range []string{
		"", "0", "2", "2.0", " 120 ", "-5", "1e300", "-1e300", "NaN", "Inf", "-Inf", "0x10", "9223372036854775807",
		"Wed, 01 May 2024 10:00:30 GMT", "Wed, 01 May 2024 09:00:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
		"Mon Jan  2 15:04:05 2006", "soon",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		d := RetryAfter(h, now, limit)
		if d < 0 || d > limit {
			t.Fatalf("RetryAfter(%q) = %v, outside [0, %v]", h, d, limit)
		}
		if n, err := strconv.Atoi(h); err == nil && n >= 0 && n <= int(limit/time.Second) && d != time.Duration(n)*time.Second {
			t.Fatalf("RetryAfter(%q) = %v, want %ds", h, d, n)
		}
		if at, err := http.ParseTime(h); err == nil {
			if want := at.Sub(now); want >= 0 && want <= limit && d != want {
				t.Fatalf("RetryAfter(%q) = %v, want %v", h, d, want)
			}
		}
	})
}
