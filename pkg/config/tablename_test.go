package config

import (
	"strings"
	"testing"
)

// TestValidTable: a table is "schema.table" or "schema.*", each name anything PostgreSQL takes
// in a quoted identifier (spaces inside, capitals, hyphens, accents) but '.', control characters
// and surrounding spaces, within PostgreSQL's 63 bytes.
func TestValidTable(t *testing.T) {
	for _, tc := range []struct {
		table string
		want  bool
	}{
		{"public.stock", true},
		{"analytics.*", true},
		{"Sales.LeadScores", true},
		{"analytics.order items", true},
		{"raw-data.Région-EU", true},
		{"public.a$b", true},
		{"public.1st_quarter", true},
		{"public." + strings.Repeat("x", 63), true},
		{"public." + strings.Repeat("x", 64), false},
		{"public", false},
		{"public.", false},
		{".stock", false},
		{"*.stock", false},
		{"public.stock.extra", false},
		{"public. stock", false},
		{"public.stock ", false},
		{"public.st\tock", false},
		{"public.st\x00ck", false},
		{"public.\xff", false},
	} {
		if got := validTable(tc.table); got != tc.want {
			t.Errorf("validTable(%q) = %v, want %v", tc.table, got, tc.want)
		}
	}
}
