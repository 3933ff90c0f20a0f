package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// DefaultOffsetsTable is the offsets table's name when with.offsets_table is not set; it lives in
// the target table's schema.
const DefaultOffsetsTable = "backflow_offsets"

// DefaultMaxConns is the connection pool size when with.max_conns is not set.
const DefaultMaxConns = 4

// withBlock is the `with` block of a postgres sink, as declared to the docs, the schema and the
// loader.
type withBlock struct {
	URL              string `with:"url,required,secret" doc:"The target database: a postgres:// URL or a key=value DSN." example:"postgres://app:${PG_PASSWORD}@db:5432/shop"`
	Table            string `with:"table,required" doc:"The target table, \"schema.table\" or \"table\" (schema public)." example:"public.stock"`
	AutoCreate       bool   `with:"auto_create" default:"false" doc:"Create the table from the first batch when it does not exist."`
	OffsetsTable     string `with:"offsets_table" doc:"The table keeping each partition's next offset, written in the same transaction as the rows; default: backflow_offsets in the target table's schema."`
	MaxConns         int    `with:"max_conns" default:"4" min:"1" doc:"The connection pool's size."`
	SoftDeleteColumn string `with:"soft_delete_column" doc:"With on_delete: soft_delete, the column set in place of a delete (boolean, date, timestamp or timestamptz)."`
	CopyInserts      bool   `with:"copy_inserts" default:"true" doc:"Load batches of newly created rows with COPY, the fast path."`
}

// configError is a problem with the sink's configuration found against the target, named by its
// path in the sink.
type configError struct {
	path string // "with.url", "key[1]", …
	msg  string
}

func (e *configError) Error() string { return e.path + ": " + e.msg }

// settings is the validated `with` block.
type settings struct {
	url                  string
	pool                 *pgxpool.Config
	schema, table        string
	autoCreate           bool
	copyInserts          bool // batches of new rows go by COPY (see copyInserts)
	offSchema, offTable  string
	maxConns             int32
	key                  []string
	softDelete, sinkName string
	version              string // the sink's version_column: last write wins by source LSN
}

// Descriptor is the postgres connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[withBlock]("postgres", "Upserts rows into a PostgreSQL table (INSERT … ON CONFLICT on the key columns, COPY for new rows) and keeps each partition's offset in the same transaction: exactly-once in the target."),
		Check: Check,
		Configure: func(p sink.Params) (sink.Opener, error) {
			cfg, err := parseSettings(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(ctx context.Context) (sink.Connector, error) { return open(ctx, cfg, p) }), nil
		},
	}
}

// parseSettings validates the parameters, reporting every problem at once.
func parseSettings(p sink.Params) (*settings, error) {
	w, ps := connspec.Decode[withBlock](p.With)
	s := &settings{url: w.URL, autoCreate: w.AutoCreate, copyInserts: w.CopyInserts, maxConns: int32(min(w.MaxConns, math.MaxInt32)),
		key: p.Key, softDelete: p.SoftDeleteColumn, sinkName: p.Sink, version: p.VersionColumn}
	if strings.TrimSpace(w.URL) != "" {
		s.pool = parsePoolConfig(w.URL, &ps)
	} else if w.URL != "" {
		ps.Add("with.url", "required; expected a postgres:// URL or a key=value DSN of the target database")
	}
	if w.Table != "" {
		if schema, name, err := parseTableName(w.Table); err != nil {
			ps.Add("with.table", "%v", err)
		} else {
			s.schema, s.table = orDefault(schema, "public"), name
		}
	}
	s.offSchema, s.offTable = s.schema, DefaultOffsetsTable
	if w.OffsetsTable != "" {
		if schema, table, err := parseTableName(w.OffsetsTable); err != nil {
			ps.Add("with.offsets_table", "%v", err)
		} else {
			s.offSchema, s.offTable = orDefault(schema, s.schema), table
		}
	}
	if s.schema != "" && s.offSchema == s.schema && s.offTable == s.table {
		ps.Add("with.offsets_table", "must differ from with.table")
	}
	checkKey(p.Key, &ps)
	return s, ps.Err()
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkKey checks the sink's key fields, the target's identity columns.
func checkKey(key []string, ps *connspec.Problems) {
	if len(key) == 0 {
		ps.Add("key", "required; expected the target's identity fields (its primary key columns), e.g. [id]")
	}
	seen := map[string]bool{}
	for i, k := range key {
		switch {
		case k == "":
			ps.Add(connspec.Index("key", i), "expected a field name")
		case seen[k]:
			ps.Add(connspec.Index("key", i), "field %q is listed twice", k)
		}
		seen[k] = true
	}
}

// parsePoolConfig parses with.url. Its errors never quote the password.
func parsePoolConfig(url string, ps *connspec.Problems) *pgxpool.Config {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx redacts the password in its message; the URL is redacted here once more in case
		// the message quotes it in a form pgx does not recognise.
		redacted := config.RedactURL(url)
		ps.Add("with.url", "%s", fmt.Sprintf("invalid connection string %s: %s", redacted, strings.ReplaceAll(err.Error(), url, redacted)))
		return nil
	}
	return pcfg
}
