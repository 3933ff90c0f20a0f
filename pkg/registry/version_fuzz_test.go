package registry

import "testing"

// FuzzParseVersion: a version path element is a number from 1 to n, "latest" or -1, and nothing
// else is taken.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1", "latest", "-1", "0", "3", "01", "+2", "9999999999999999999"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		v, ok := parseVersion(s, n)
		if ok && s != "latest" && s != "-1" && (v < 1 || v > n) {
			t.Fatalf("%q of %d versions read as %d", s, n, v)
		}
	})
}
