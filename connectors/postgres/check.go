package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check connects with the sink's settings and reports, writing nothing, every problem that would
// stop the sink: a missing table (without auto_create) or column, a key without a unique index,
// a privilege the role lacks on the table, its schema or the offsets table.
func Check(ctx context.Context, p sink.Params, fields []string) error {
	cfg, err := parseSettings(p)
	if err != nil {
		return err
	}
	redacted := config.RedactURL(cfg.url)
	cc, err := pgx.ParseConfig(cfg.url)
	if err != nil {
		return &configError{path: "with.url", msg: "invalid connection string " + redacted + ": " + strings.ReplaceAll(err.Error(), cfg.url, redacted)}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("connect to postgres target %s: %w", redacted, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c := checker{ctx: ctx, q: conn, cfg: cfg}
	c.target(fields)
	c.offsets()
	return errors.Join(c.problems...)
}

// checker collects the problems of one check.
type checker struct {
	ctx      context.Context
	q        querier
	cfg      *settings
	problems []error
}

func (c *checker) add(format string, args ...any) {
	c.problems = append(c.problems, fmt.Errorf(format, args...))
}

// target checks the target table: its shape as the connector reads it at start, the mapped
// fields, and INSERT, UPDATE, DELETE (or UPDATE alone for soft deletes) on it.
func (c *checker) target(fields []string) {
	t, err := readTarget(c.ctx, c.q, c.cfg.schema, c.cfg.table, c.cfg.key, c.cfg.softDelete, c.cfg.autoCreate)
	if err == nil {
		err = t.resolveVersion(c.cfg.version)
	}
	if err != nil {
		c.problems = append(c.problems, err)
		return
	}
	name := t.qualifiedName()
	if !t.exists {
		c.schemaCreate(c.cfg.schema, "auto_create: table "+name+" is missing and")
		return
	}
	var missing []string
	for _, f := range fields {
		if _, ok := t.byName[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		if !c.cfg.autoCreate {
			c.add("table %s has no column %s for the mapped fields: add them, or set with.auto_create: true", name, strings.Join(missing, ", "))
		} else if !c.owns(t.ident) {
			c.add("table %s lacks column %s and the role does not own the table, so auto_create cannot add them", name, strings.Join(missing, ", "))
		}
	}
	privs := []string{"SELECT", "INSERT", "UPDATE", "DELETE"}
	if c.cfg.softDelete != "" {
		privs = privs[:3]
	}
	c.privileges(t.ident, name, privs)
}

// offsets checks the offsets table: present with the rights the connector uses, or creatable.
func (c *checker) offsets() {
	name := c.cfg.offSchema + "." + c.cfg.offTable
	oid, _, err := lookupRelation(c.ctx, c.q, c.cfg.offSchema, c.cfg.offTable)
	if err != nil {
		c.add("look up offsets table %s: %w", name, err)
		return
	}
	if oid == 0 {
		c.schemaCreate(c.cfg.offSchema, "offsets table "+name+" is missing and")
		return
	}
	c.privileges(quoteQualified(c.cfg.offSchema, c.cfg.offTable), name, []string{"SELECT", "INSERT", "UPDATE"})
}

// privileges reports each privilege the role lacks on the table.
func (c *checker) privileges(ident, name string, privs []string) {
	for _, priv := range privs {
		var ok bool
		if err := c.q.QueryRow(c.ctx, "SELECT has_table_privilege($1, $2)", ident, priv).Scan(&ok); err != nil {
			c.add("read privileges on %s: %w", name, err)
			return
		}
		if !ok {
			c.add("the role lacks %s on %s: GRANT %s ON %s TO the sink's role", priv, name, priv, ident)
		}
	}
}

// schemaCreate reports when the role may not create tables in schema (or the schema itself).
func (c *checker) schemaCreate(schema, what string) {
	var exists, ok bool
	err := c.q.QueryRow(c.ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1),
		CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE')
		ELSE has_database_privilege(current_database(), 'CREATE') END`, schema).Scan(&exists, &ok)
	switch {
	case err != nil:
		c.add("read privileges on schema %s: %w", schema, err)
	case !ok && exists:
		c.add("%s the role may not create it: GRANT CREATE ON SCHEMA %s TO the sink's role", what, pgx.Identifier{schema}.Sanitize())
	case !ok:
		c.add("%s schema %s is missing and the role may not create it: GRANT CREATE ON DATABASE to the sink's role", what, schema)
	}
}

// owns reports whether the role owns the table (or is a member of its owner).
func (c *checker) owns(ident string) bool {
	var ok bool
	err := c.q.QueryRow(c.ctx, "SELECT pg_has_role((SELECT relowner FROM pg_class WHERE oid = $1::regclass), 'USAGE')", ident).Scan(&ok)
	return err == nil && ok
}
