package capture

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflow-dev/backflow/pkg/config"
)

// TestPublicationGap: the stream's failure to decode past a dropped publication is told by its
// code, the plugin in its context and the publication's name, whatever language the server
// speaks; a missing slot (the same code, before any decoding) and another failure are not it.
func TestPublicationGap(t *testing.T) {
	const where = `slot "backflow", output plugin "pgoutput", in the change callback, associated LSN 0/1A6C800`
	c := &Capture{pg: config.Postgres{Publication: "backflow"}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"dropped publication", &pgconn.PgError{Code: "42704", Message: `publication "backflow" does not exist`, Where: where}, true},
		{"translated", &pgconn.PgError{Code: "42704", Message: `la publication « backflow » n'existe pas`, Where: where}, true},
		{"wrapped", fmt.Errorf("replication stream: %w", &pgconn.PgError{Code: "42704", Message: `publication "backflow" does not exist`, Where: where}), true},
		{"missing slot", &pgconn.PgError{Code: "42704", Message: `replication slot "backflow" does not exist`}, false},
		{"another publication", &pgconn.PgError{Code: "42704", Message: `publication "other" does not exist`, Where: where}, false},
		{"another failure", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, false},
		{"not from the server", fmt.Errorf("receive: EOF"), false},
	} {
		if got := c.publicationGap(tc.err); got != tc.want {
			t.Errorf("%s: publicationGap = %v, want %v", tc.name, got, tc.want)
		}
	}
}
