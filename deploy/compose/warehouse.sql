-- The demo warehouse of docker-compose.yml. The postgres image runs this file once, with psql, as
-- the superuser in database "warehouse", when its data volume is new (docker-entrypoint-initdb.d).
--
-- It creates the quickstart's demo tables, the role capture connects as, with the least it needs
-- (LOGIN, REPLICATION, SELECT on the captured tables, a schema of its own for its signal table),
-- and the publication. Creating a publication
-- FOR TABLE takes ownership of the tables, which the capture role should not have, so an
-- administrator creates it here; capture finds it and uses it (and would create it itself when
-- running as the tables' owner).

\set ON_ERROR_STOP on
-- The capture role's password comes from the container's environment (WAREHOUSE_PASSWORD in
-- docker-compose.yml), never from this file.
\getenv backflow_password BACKFLOW_PASSWORD
\if :{?backflow_password}
\else
  \echo 'BACKFLOW_PASSWORD is not set: the capture role gets the demo password "backflow"'
  \set backflow_password backflow
\endif

CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS public.inventory (
	sku text, warehouse text, qty int NOT NULL, reserved int NOT NULL DEFAULT 0,
	price numeric(10,2) NOT NULL, active bool NOT NULL DEFAULT true, updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (sku, warehouse));

CREATE TABLE IF NOT EXISTS analytics.lead_scores (
	email text PRIMARY KEY, score int NOT NULL, segment text, scored_at timestamptz NOT NULL DEFAULT now());

INSERT INTO public.inventory (sku, warehouse, qty, price)
	SELECT 'SKU-' || lpad(g::text, 3, '0'), w, 50 + g, 9.99 + g FROM generate_series(1, 20) g, unnest(ARRAY['ams', 'nyc']) w
	ON CONFLICT DO NOTHING;

INSERT INTO analytics.lead_scores (email, score, segment)
	SELECT 'lead' || g || '@example.com', 10 * g % 100, 'smb' FROM generate_series(1, 10) g
	ON CONFLICT DO NOTHING;

-- The capture role: logical replication (REPLICATION) and reading the captured tables (the initial
-- snapshot and table metadata). Nothing else: no superuser, no ownership, no write access.
CREATE ROLE backflow WITH LOGIN REPLICATION PASSWORD :'backflow_password';
GRANT USAGE ON SCHEMA public, analytics TO backflow;
GRANT SELECT ON public.inventory, analytics.lead_scores TO backflow;

-- backflow's own schema, owned by the capture role, for the re-snapshot signal table
-- (source.postgres.signal_table: backflow.signal; `backflow snapshot` inserts there and capture
-- sees the row in the WAL). The table is created here so that it can join the publication.
CREATE SCHEMA backflow AUTHORIZATION backflow;
CREATE TABLE backflow.signal (
	id bigserial PRIMARY KEY, type text NOT NULL, data text NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE backflow.signal OWNER TO backflow;

-- The publication named by source.postgres.publication in deploy/compose/pipeline.yaml, for the
-- tables of source.postgres.tables and the signal table. The replication slot is created by
-- capture itself.
CREATE PUBLICATION backflow FOR TABLE public.inventory, analytics.lead_scores, backflow.signal;
