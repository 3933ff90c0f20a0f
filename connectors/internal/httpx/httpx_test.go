package httpx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	limit := 5 * time.Minute
	for h, want := range map[string]time.Duration{
		"120": 2 * time.Minute, " 3 ": 3 * time.Second, "2.0": 2 * time.Second, "0.5": 500 * time.Millisecond,
		"": 0, "soon": 0, "-5": 0, "99999": limit, "999999999999999999999": limit,
		"Fri, 01 May 2026 10:00:30 GMT": 30 * time.Second, "Fri, 01 May 2026 09:00:00 GMT": 0,
		"Sat, 02 May 2026 10:00:00 GMT": limit,
	} {
		if got := RetryAfter(h, now, limit); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"  short \n", 200, "short"},
		{"", 200, "(empty body)"},
		{"   ", 200, "(empty body)"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // é is two bytes: not cut in two
		{"a\xffb", 200, "a?b"},
	} {
		if got := Snippet([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("Snippet(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestWithoutURL(t *testing.T) {
	_, err := http.Get("http://user:secret@127.0.0.1:1/x")
	if err == nil {
		t.Skip("something listens on port 1")
	}
	if got := WithoutURL(err); strings.Contains(got.Error(), "secret") {
		t.Errorf("WithoutURL kept the URL: %v", got)
	}
	plain := errors.New("plain")
	if WithoutURL(plain) != plain {
		t.Error("WithoutURL changed an error without a URL")
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on an ended context = %v", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep = %v", err)
	}
}
