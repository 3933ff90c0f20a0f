package capture

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// catalogConn connects to a throwaway cluster of its own, for tests of catalog queries; it is
// closed when the test ends.
func catalogConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := testenv.NewPostgres(t).Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// TestRelationKeysFollowTheMessage: with the default replica identity a Relation message flags
// its primary key as of its place in the WAL. A catalog that shows another key (the DDL that
// changed it not visible yet, or a later one) is read again for a moment, then the message
// decides; a catalog that agrees gives the key in its index order.
func TestRelationKeysFollowTheMessage(t *testing.T) {
	ctx := context.Background()
	conn := catalogConn(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE public.keyless (a int, b int);
		CREATE TABLE public.keyed (a int, b int, PRIMARY KEY (b, a))`); err != nil {
		t.Fatal(err)
	}
	oid := func(name string) uint32 {
		var o uint32
		if err := conn.QueryRow(ctx, "SELECT $1::regclass::oid", name).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	msg := func(table string, ident byte, flagged ...string) *pglogrepl.RelationMessage {
		m := &pglogrepl.RelationMessage{RelationID: oid("public." + table), Namespace: "public", RelationName: table, ReplicaIdentity: ident}
		for _, c := range []string{"a", "b"} {
			col := &pglogrepl.RelationMessageColumn{Name: c}
			for _, f := range flagged {
				if f == c {
					col.Flags = 1
				}
			}
			m.Columns = append(m.Columns, col)
		}
		return m
	}
	cat := newCatalog(conn, nil)
	cat.keyWaitFor = 50 * time.Millisecond
	for _, tc := range []struct {
		name string
		m    *pglogrepl.RelationMessage
		want []string // nil: no key
	}{
		{"agreeing catalog, its order", msg("keyed", 'd', "a", "b"), []string{"b", "a"}},
		{"key dropped, catalog behind", msg("keyed", 'd'), nil},
		{"key added, catalog behind", msg("keyless", 'd', "a"), []string{"a"}},
		{"no key", msg("keyless", 'd'), nil},
		{"full identity: the catalog's key", msg("keyed", 'f', "a", "b"), []string{"b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := cat.relationKeys(ctx, tc.m)
			if nk := (noKeyError{}); tc.want == nil && !errors.As(err, &nk) {
				t.Fatalf("keys %v, error %v: want no key", keys, err)
			}
			if tc.want != nil && (err != nil || !reflect.DeepEqual(keys, tc.want)) {
				t.Fatalf("keys %v, error %v: want %v", keys, err, tc.want)
			}
		})
	}
}
