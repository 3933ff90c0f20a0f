package mysql

import (
	"context"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestCheck runs the read-only check against the test server: a user with SELECT only is told
// every statement it may not run and that it may not create the offsets table; root passes, and
// a mapped field the table lacks is named. Nothing is written: the offsets table stays absent.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	exec(t, "CREATE TABLE chk (id INT PRIMARY KEY, name VARCHAR(50))")
	weak := weakUser(t, "bfchk_", "SELECT")

	params := func(dsn string) sink.Params {
		return sink.Params{Sink: "s", Key: []string{"id"}, With: map[string]any{"dsn": dsn, "table": "chk"}}
	}
	err := Check(ctx, params(weak.FormatDSN()), []string{"id", "name"})
	if err == nil {
		t.Fatal("a user with SELECT only passed the check")
	}
	for _, want := range []string{"INSERT", "DELETE", "may not create it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check of a SELECT-only user: %q lacks %q", err, want)
		}
	}
	if err := Check(ctx, params(dsn()), []string{"id", "name"}); err != nil {
		t.Errorf("check as root: %v", err)
	}
	if err := Check(ctx, params(dsn()), []string{"id", "name", "score"}); err == nil || !strings.Contains(err.Error(), "no column score") {
		t.Errorf("check with a field the table lacks: %v", err)
	}
	if got := rows(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '"+testDB+"' AND TABLE_NAME = '"+DefaultOffsetsTable+"'"); got[0] != "0" {
		t.Errorf("the check created the offsets table")
	}
	if got := rows(t, "SELECT COUNT(*) FROM chk"); got[0] != "0" {
		t.Errorf("the check wrote %s row(s)", got[0])
	}
}
