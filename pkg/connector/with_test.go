package connector

import (
	"strings"
	"testing"
	"time"
)

func TestIntValue(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int
		ok   bool
	}{{3, 3, true}, {int64(4), 4, true}, {uint64(5), 5, true}, {6.0, 6, true}, {"7", 7, true}, {6.5, 0, false}, {"x", 0, false}, {nil, 0, false}} {
		if got, ok := IntValue(tc.in); ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("IntValue(%#v) = %d, %v", tc.in, got, ok)
		}
	}
}

func TestDurationSetting(t *testing.T) {
	if d, err := DurationSetting("timeout", nil, time.Second); err != nil || d != time.Second {
		t.Errorf("absent: %v %v", d, err)
	}
	if d, err := DurationSetting("timeout", "250ms", time.Second); err != nil || d != 250*time.Millisecond {
		t.Errorf("250ms: %v %v", d, err)
	}
	for _, bad := range []any{10, "soon", "0s", "-1s"} {
		if _, err := DurationSetting("timeout", bad, time.Second); err == nil || !strings.HasPrefix(err.Error(), "with.timeout: ") {
			t.Errorf("%v: error %v, want one naming with.timeout", bad, err)
		}
	}
}
