package capture

import (
	"context"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestReadsByPages: only a plain table without children is read by pages, and only on a server
// with TID range scans; a partitioned table, an inheritance parent and its child are not, or
// not as a parent.
func TestReadsByPages(t *testing.T) {
	ctx := context.Background()
	conn := catalogConn(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE public.plain (id int PRIMARY KEY);
		CREATE TABLE public.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE public.parent (id int PRIMARY KEY);
		CREATE TABLE public.child () INHERITS (public.parent)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table   string
		version int
		want    bool
	}{
		{"plain", 150000, true},
		{"plain", 130000, false},
		{"parted", 150000, false},
		{"parted_1", 150000, true},
		{"parent", 150000, false},
		{"child", 150000, true},
	} {
		got, err := readsByPages(ctx, conn, tc.version, &change.Table{Schema: "public", Name: tc.table})
		if err != nil || got != tc.want {
			t.Errorf("readsByPages(%s, %d) = %v, %v; want %v", tc.table, tc.version, got, err, tc.want)
		}
	}
	if _, err := readsByPages(ctx, conn, 150000, &change.Table{Schema: "public", Name: "gone"}); err == nil {
		t.Errorf("readsByPages of a missing table: no error")
	}
}
