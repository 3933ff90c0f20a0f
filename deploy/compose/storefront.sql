-- The demo target of docker-compose.yml: the storefront's database. The postgres image runs this
-- file once, with psql, as the superuser in database "storefront", when its data volume is new.
--
-- It creates the table the storefront-stock sink writes (the quickstart's public.stock) and the
-- role the sink connects as, allowed to write that table and nothing else of the storefront's.

\set ON_ERROR_STOP on
-- The sink role's password comes from the container's environment (STOREFRONT_PASSWORD in
-- docker-compose.yml), never from this file.
\getenv backflow_password BACKFLOW_PASSWORD
\if :{?backflow_password}
\else
  \echo 'BACKFLOW_PASSWORD is not set: the sink role gets the demo password "backflow"'
  \set backflow_password backflow
\endif

CREATE TABLE IF NOT EXISTS public.stock (
	sku text, warehouse text, available int NOT NULL, price_cents bigint NOT NULL,
	synced_at timestamptz NOT NULL, PRIMARY KEY (sku, warehouse));

-- The sink role: upserts, deletes and truncates (on_truncate: truncate) in public.stock, and
-- CREATE in schema public for the table where the postgres connector keeps its Kafka offsets
-- (backflow_offsets, written in the same transaction as the rows).
CREATE ROLE backflow WITH LOGIN PASSWORD :'backflow_password';
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.stock TO backflow;
GRANT USAGE, CREATE ON SCHEMA public TO backflow;
