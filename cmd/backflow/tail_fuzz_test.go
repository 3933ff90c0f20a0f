package main

import (
	"strings"
	"testing"
)

// FuzzParseKeyFilter: tail's --key is a bare value, or col=value parts that each name a column;
// anything else is refused with an error quoting it.
func FuzzParseKeyFilter(f *testing.F) {
	for _, s := range []string{"42", "id=7", "a=1,b=2", "=1", "a=1,", "", "x,y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseKeyFilter(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--key") {
				t.Fatalf("error %q does not say which flag", err)
			}
			return
		}
		if k.set != (s != "") {
			t.Fatalf("%q: set = %v", s, k.set)
		}
		for col := range k.columns {
			if col == "" {
				t.Fatalf("%q gave an empty column", s)
			}
		}
	})
}
