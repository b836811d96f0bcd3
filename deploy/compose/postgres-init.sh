#!/usr/bin/env bash
# PostgreSQL's first start (docker-entrypoint-initdb.d): a read-only role for the Kaleidoscope ML
# service's search sync (the `ml` profile), which reads rows of Kaleido's tables and writes
# nothing. Its password is the secret postgres_ml_password. Kaleido's own role (POSTGRES_USER)
# creates the tables later; its default privileges give ml_search SELECT on each.
set -euo pipefail
password=$(tr -d '\n' <"${POSTGRES_ML_PASSWORD_FILE:-/run/secrets/postgres_ml_password}")
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$password" --set=owner="$POSTGRES_USER" --set=db="$POSTGRES_DB" <<'SQL'
CREATE ROLE ml_search LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO ml_search;
GRANT USAGE ON SCHEMA public TO ml_search;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ml_search;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO ml_search;
SQL
