-- Fleet's database bootstrap: roles, database and schema, idempotent (safe to run on every start).
-- Run as a superuser connected to any database, with psql variables set:
--   fleet_password     password of the application role `fleet` (owner of database and schema `fleet`)
--   readonly_password  password of `fleet_readonly`, the analysts' read-only role
--   worker_password    password of `fleet_worker`, the workers' role
--   api_password       password of `fleet_api`, the HTTP API's role (and outside Fleet.Client producers')
-- The tables themselves are created by the migrator (`fleet migrate`, EF Core) running as `fleet`; the default
-- privileges below make every table it creates readable by `fleet_readonly`. What `fleet_worker` and `fleet_api`
-- may do on each table belongs to the schema: the migrations grant it (docs/schema.md, "Roles").
\set ON_ERROR_STOP on

SELECT 'CREATE ROLE fleet LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet') \gexec
ALTER ROLE fleet WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'fleet_password';

SELECT 'CREATE ROLE fleet_readonly LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') \gexec
ALTER ROLE fleet_readonly WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'readonly_password';
-- Belt and braces: even a table someone forgot to protect stays read-only for this role.
ALTER ROLE fleet_readonly SET default_transaction_read_only = on;
ALTER ROLE fleet_readonly SET search_path = fleet, public;

-- The components' roles: no rights of their own here beyond logging in; the migrations grant the rest.
SELECT 'CREATE ROLE fleet_worker LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') \gexec
ALTER ROLE fleet_worker WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'worker_password';
ALTER ROLE fleet_worker SET search_path = fleet, public;

SELECT 'CREATE ROLE fleet_api LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') \gexec
ALTER ROLE fleet_api WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'api_password';
ALTER ROLE fleet_api SET search_path = fleet, public;

SELECT 'CREATE DATABASE fleet OWNER fleet ENCODING ''UTF8'' TEMPLATE template0'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'fleet') \gexec
ALTER DATABASE fleet OWNER TO fleet;
GRANT CONNECT ON DATABASE fleet TO fleet_readonly, fleet_worker, fleet_api;

\connect fleet
CREATE SCHEMA IF NOT EXISTS fleet AUTHORIZATION fleet;
ALTER SCHEMA fleet OWNER TO fleet;
GRANT USAGE ON SCHEMA fleet TO fleet_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA fleet TO fleet_readonly;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA fleet TO fleet_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE fleet IN SCHEMA fleet GRANT SELECT ON TABLES TO fleet_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE fleet IN SCHEMA fleet GRANT SELECT ON SEQUENCES TO fleet_readonly;
