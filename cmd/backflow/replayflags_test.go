package main

import (
	"testing"
	"time"
)

// TestRedriveSelectionFlags: the flags that select dead letters parse into a selection, and bad
// values are refused with the flag named.
func TestRedriveSelectionFlags(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		f     replayFlags
		ok    bool
		check func(t *testing.T, f replayFlags)
	}{
		{"none", replayFlags{}, true, nil},
		{"keys", replayFlags{keys: []string{"id=1", "sku=A,warehouse=ams"}}, true, func(t *testing.T, f replayFlags) {
			sel, _ := selection(f)
			if len(sel.Keys) != 2 || sel.Keys[1]["warehouse"] != "ams" {
				t.Errorf("keys %v", sel.Keys)
			}
		}},
		{"reason", replayFlags{reason: "lock|dead"}, true, func(t *testing.T, f replayFlags) {
			if sel, _ := selection(f); sel.Reason == nil || !sel.Reason.MatchString("apply: deadlock") {
				t.Errorf("reason %v", sel.Reason)
			}
		}},
		{"times", replayFlags{since: "2026-05-01T10:00:00Z", until: "2026-05-01T12:00:00+02:00"}, true, func(t *testing.T, f replayFlags) {
			if sel, _ := selection(f); !sel.Since.Equal(at) || !sel.Until.Equal(at) {
				t.Errorf("since %v until %v, want both %v", sel.Since, sel.Until, at)
			}
		}},
		{"bad key", replayFlags{keys: []string{"id"}}, false, nil},
		{"bad reason", replayFlags{reason: "("}, false, nil},
		{"bad since", replayFlags{since: "yesterday"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := selection(tc.f)
			if (err == nil) != tc.ok {
				t.Fatalf("selection error %v, want ok=%v", err, tc.ok)
			}
			if tc.check != nil {
				tc.check(t, tc.f)
			}
		})
	}
}
