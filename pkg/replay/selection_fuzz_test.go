package replay

import (
	"strings"
	"testing"
)

// FuzzParseKey: a --key either parses into named columns, none empty or given twice, or is
// refused with an error quoting it.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"id=7", "a=1,b=x y", "id", "=1", "a=1,a=2", "", "a==b,", "a=1,,b=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cols, err := ParseKey(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--key") {
				t.Fatalf("error %q does not say which flag", err)
			}
			return
		}
		if len(cols) == 0 {
			t.Fatalf("%q parsed to no column", s)
		}
		for col := range cols {
			if col == "" || col != strings.TrimSpace(col) {
				t.Fatalf("%q gave column %q", s, col)
			}
		}
	})
}
