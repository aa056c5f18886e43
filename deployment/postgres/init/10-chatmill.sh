#!/usr/bin/env bash
# Runs once, when the postgres container starts on an EMPTY data volume (docker-entrypoint-initdb.d).
#
# Creates
#   * the application role CHATMILL_DB_USER (LOGIN, no superuser) and its database CHATMILL_DB_NAME,
#     with the pgvector extension already installed (CREATE EXTENSION needs a superuser; the
#     migrations' `CREATE EXTENSION IF NOT EXISTS vector` is then a no-op for the app role);
#   * Windmill's database WINDMILL_DB_NAME, owned by the superuser (Windmill creates its own roles).
# Neither database is open to PUBLIC: the app role cannot connect to Windmill's database.
#
# Names and the password are passed as psql variables, never pasted into SQL.
set -euo pipefail

: "${CHATMILL_DB_NAME:=chatmill}"
: "${CHATMILL_DB_USER:=chatmill}"
: "${WINDMILL_DB_NAME:=windmill}"
if [[ -z "${CHATMILL_DB_PASSWORD:-}" ]]; then
    echo "10-chatmill.sh: CHATMILL_DB_PASSWORD is not set" >&2
    exit 1
fi

psql_admin=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}")

"${psql_admin[@]}" --dbname "${POSTGRES_DB:-postgres}" \
    -v app_db="$CHATMILL_DB_NAME" -v app_user="$CHATMILL_DB_USER" \
    -v app_password="$CHATMILL_DB_PASSWORD" -v windmill_db="$WINDMILL_DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('CREATE DATABASE %I', :'windmill_db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'windmill_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'windmill_db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'app_db', :'app_user') \gexec
SQL

"${psql_admin[@]}" --dbname "$CHATMILL_DB_NAME" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
SQL

echo "10-chatmill.sh: created role/database ${CHATMILL_DB_USER}/${CHATMILL_DB_NAME} and database ${WINDMILL_DB_NAME}"
