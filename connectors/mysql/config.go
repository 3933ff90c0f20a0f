package mysql

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Defaults of the optional `with` keys.
const (
	DefaultOffsetsTable = "backflow_offsets"
	DefaultMaxConns     = 4
)

// settings is the `with` block of a mysql sink, as declared to the docs, the schema and the loader.
type settings struct {
	DSN              string `with:"dsn,required,secret" doc:"The target database: a go-sql-driver DSN (user:pass@tcp(host:3306)/db?param=value) or a mysql://user:pass@host:3306/db URL." example:"app:${MYSQL_PASSWORD}@tcp(db:3306)/shop"`
	Table            string `with:"table,required" doc:"The target table, \"table\" (in the DSN's database) or \"db.table\"." example:"stock"`
	OffsetsTable     string `with:"offsets_table" default:"backflow_offsets" doc:"The table keeping each partition's next offset, written in the same transaction as the rows; created when absent."`
	MaxConns         int    `with:"max_conns" default:"4" min:"1" doc:"The connection pool's size (at most 10000)."`
	TLS              string `with:"tls" enum:"true,false,skip-verify,preferred" doc:"TLS to the server; default: as the DSN says."`
	SoftDeleteColumn string `with:"soft_delete_column" doc:"With on_delete: soft_delete, the column set in place of a delete."`
}

// options is the validated `with` block.
type options struct {
	cfg      *mysql.Config
	explicit url.Values // parameters the DSN sets itself
	table    tableName
	offsets  tableName
	maxConns int
}

// Descriptor is the mysql connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[settings]("mysql", "Upserts rows into a MySQL or MariaDB table with multi-row statements and keeps each partition's offset in the same transaction: exactly-once in the target."),
		Check: Check,
		Configure: func(p sink.Params) (sink.Opener, error) {
			o, err := parseOptions(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(ctx context.Context) (sink.Connector, error) {
				c, err := open(ctx, o, p)
				if err != nil {
					return nil, err // not a nil *Connector in a non-nil interface
				}
				return c, nil
			}), nil
		},
	}
}

// parseOptions validates p, reporting every problem at once.
func parseOptions(p sink.Params) (*options, error) {
	s, ps := connspec.Decode[settings](p.With)
	o := &options{maxConns: s.MaxConns}
	if s.MaxConns > 10000 {
		ps.Add("with.max_conns", "%d is too many; expected at most 10000", s.MaxConns)
	}
	if dsn := strings.TrimSpace(s.DSN); dsn != "" {
		var err error
		if o.cfg, o.explicit, err = parseDSN(dsn); err != nil {
			ps.Add("with.dsn", "%v", err)
		}
	} else if s.DSN != "" {
		ps.Add("with.dsn", "required")
	}
	if o.cfg != nil && s.TLS != "" {
		o.cfg.TLSConfig, o.cfg.TLS, o.cfg.AllowFallbackToPlaintext = s.TLS, nil, false
	}
	if o.cfg != nil && s.Table != "" {
		var err error
		if o.table, err = parseTableName(strings.TrimSpace(s.Table), o.cfg.DBName); err != nil {
			ps.Add("with.table", "%v", err)
		} else if o.offsets, err = parseTableName(s.OffsetsTable, o.table.schema); err != nil {
			ps.Add("with.offsets_table", "%v", err)
		}
	}
	checkKey(p.Key, &ps)
	return o, ps.Err()
}

// checkKey checks the sink's key fields: MySQL column names are case-insensitive.
func checkKey(key []string, ps *connspec.Problems) {
	if len(key) == 0 {
		ps.Add("key", "required: the target's identity fields (a PRIMARY or UNIQUE key of the table)")
	}
	seen := map[string]bool{}
	for i, k := range key {
		switch {
		case k == "":
			ps.Add(connspec.Index("key", i), "empty field name")
		case seen[strings.ToLower(k)]:
			ps.Add(connspec.Index("key", i), "%s", fmt.Sprintf("field %q listed twice", k))
		}
		seen[strings.ToLower(k)] = true
	}
}
