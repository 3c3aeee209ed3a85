-- One database and one role per service: each role owns its service's database and can connect
-- to no other, so no service reads another's tables, even by mistake. The postgres image runs
-- this once, on an empty data directory; the passwords come from its environment (psql's
-- \getenv, PostgreSQL 15 and later), set in deploy/compose.yaml.
\set ON_ERROR_STOP on

\getenv intake_password INTAKE_DATABASE_PASSWORD
\getenv dispatch_password DISPATCH_DATABASE_PASSWORD
\getenv points_password POINTS_DATABASE_PASSWORD
\getenv notify_password NOTIFY_DATABASE_PASSWORD

CREATE ROLE redvest_intake LOGIN PASSWORD :'intake_password';
CREATE ROLE redvest_dispatch LOGIN PASSWORD :'dispatch_password';
CREATE ROLE redvest_points LOGIN PASSWORD :'points_password';
CREATE ROLE redvest_notify LOGIN PASSWORD :'notify_password';

-- The owner may create tables in its database's public schema (PostgreSQL 15 and later give
-- that schema to the database's owner); migrations run as the service's role.
CREATE DATABASE redvest_intake OWNER redvest_intake;
CREATE DATABASE redvest_dispatch OWNER redvest_dispatch;
CREATE DATABASE redvest_points OWNER redvest_points;
CREATE DATABASE redvest_notify OWNER redvest_notify;

REVOKE ALL ON DATABASE redvest_intake FROM PUBLIC;
REVOKE ALL ON DATABASE redvest_dispatch FROM PUBLIC;
REVOKE ALL ON DATABASE redvest_points FROM PUBLIC;
REVOKE ALL ON DATABASE redvest_notify FROM PUBLIC;
