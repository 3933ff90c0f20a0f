package model

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/config"
)

// TestCheck: validate --connect's check of a model finds a query that does not parse, a key
// not in the result and a table the role cannot read, and runs nothing.
func TestCheck(t *testing.T) {
	e := newEnv(t,
		config.Model{Name: "good", SQL: leadScores, Key: []string{"email"}},
		config.Model{Name: "nokey", SQL: leadScores, Key: []string{"id"}},
		config.Model{Name: "typo", SQL: "SELEC 1", Key: []string{"id"}})
	seedEvents(e)
	e.exec(`CREATE ROLE weak LOGIN`)
	ctx := context.Background()
	for _, c := range []struct{ model, want string }{
		{"good", ""},
		{"nokey", `key column "id" is not in the result`},
		{"typo", "syntax error"},
	} {
		err := Check(ctx, e.cfg, c.model)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: got %v, want %q", c.model, err, c.want)
		}
	}
	weak := *e.cfg
	weak.Source.Postgres.URL = fmt.Sprintf("postgres://weak@127.0.0.1:%d/postgres?sslmode=disable", e.pg.Port())
	if err := Check(ctx, &weak, "good"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("a role that cannot read the table: got %v", err)
	}
}
