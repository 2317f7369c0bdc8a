#!/usr/bin/env bash
# Starts the local PostgreSQL cluster (installed by scripts/install.sh from the system packages) and makes
# the role and database the tests look for: postgresql+psycopg://automlp:automlp@127.0.0.1:5432/automlp
# (tests/conftest.py; AUTOMLP_TEST_POSTGRES_URL points them elsewhere). The role owns its
# database: each test makes a fresh schema in it. Run as root; running it again changes nothing.
set -euo pipefail
cluster=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1, $2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
# shellcheck disable=SC2086
pg_ctlcluster $cluster start >/dev/null 2>&1 || true  # "already running" is fine
as_postgres() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt "$@"; }
for _ in $(seq 30); do as_postgres -c "select 1" >/dev/null 2>&1 && break; sleep 1; done
if [ -z "$(as_postgres -c "select 1 from pg_roles where rolname = 'automlp'")" ]; then
  as_postgres -c "create role automlp login password 'automlp'"
fi
# A second role that the tests grant only SELECT: what a store refuses to a role that may only read.
if [ -z "$(as_postgres -c "select 1 from pg_roles where rolname = 'automlp_reader'")" ]; then
  as_postgres -c "create role automlp_reader login password 'automlp_reader'"
fi
if [ -z "$(as_postgres -c "select 1 from pg_database where datname = 'automlp'")" ]; then
  as_postgres -c "create database automlp owner automlp"
fi
